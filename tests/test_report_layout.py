"""Charts keep their legends off the data, and ratios read the right way round (the browser checks the rest)."""
import re
from pathlib import Path

from reports.charts import ratio_words
from reports.svgfig import legend_outside, new_figure, style

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_every_legend_is_drawn_outside_the_plot_area():
    """matplotlib's 'best' place still covers a line when every corner holds one: the reports place legends
    with `legend_outside` only, and its legend lies beside the axes, not on them."""
    direct = [f"{path.name}:{n}" for path in REPORTS.glob("*.py") if path.name != "svgfig.py"
              for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\.legend\(", line)]
    assert direct == []
    fig, ax = new_figure(5, 3)
    with style():
        for k in range(3):
            ax.plot([1, 2, 3], [k, k + 1, k + 2], label=f"series {k}")
        legend = legend_outside(ax)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box, axes_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.x0 >= axes_box.x1 and box.x1 <= fig.bbox.x1 + 1


def test_ratio_words_never_say_less_for_a_ratio_below_one():
    assert ratio_words(1.76, "less", "more") == "1.76× less"
    assert ratio_words(0.5, "less", "more") == "2.00× more"
