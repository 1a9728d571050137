"""Matplotlib figures as inline SVG: no XML prolog, no namespace URLs, ids unique within the page."""
from __future__ import annotations

import io
import itertools
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

STYLE = {
    "svg.fonttype": "none",            # text stays text: small, crisp, selectable
    "svg.hashsalt": "aimc-report",     # stable ids from one run to the next
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9.5,
    "axes.edgecolor": "#b9c2ce",
    "axes.labelcolor": "#3b4656",
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": "#1d2433",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6eaf0",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "xtick.color": "#5f6b7a",
    "ytick.color": "#5f6b7a",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.dpi": 100,
}

_counter = itertools.count()
_ID = re.compile(r'\bid="([^"]+)"')


def new_figure(width_in: float, height_in: float, **subplots):
    """A figure laid out by matplotlib's constrained layout (one draw; no second 'tight' pass on save)."""
    subplots.setdefault("layout", "constrained")
    with plt.rc_context(STYLE):
        return plt.subplots(figsize=(width_in, height_in), **subplots)


def style():
    """The rc context to draw in (fonts and colors of the report)."""
    return plt.rc_context(STYLE)


def to_svg(fig, label: str) -> str:
    """The figure as an <svg> element for inline use in HTML, scaled to its container's width."""
    buffer = io.StringIO()
    with plt.rc_context(STYLE):
        fig.savefig(buffer, format="svg", transparent=True,
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]                                   # drop the XML prolog and DOCTYPE
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # matplotlib's `*{stroke-linejoin...}` rule would leak into the whole page; the stylesheet scopes it.
    text = re.sub(r'<style type="text/css">.*?</style>', "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)                 # HTML's parser knows SVG's namespace
    prefix = f"f{next(_counter)}-"
    ids = set(_ID.findall(text))
    for ident in sorted(ids, key=len, reverse=True):
        text = text.replace(f'id="{ident}"', f'id="{prefix}{ident}"')
        text = text.replace(f"url(#{ident})", f"url(#{prefix}{ident})")
        text = text.replace(f'href="#{ident}"', f'href="#{prefix}{ident}"')
    text = re.sub(r'<svg([^>]*?)\swidth="([\d.]+)pt"\s+height="([\d.]+)pt"',
                  lambda m: f'<svg{m.group(1)} class="chart" role="img" aria-label="{label}" '
                            f'style="width:100%;max-width:{float(m.group(2)) * 4 / 3:.0f}px"', text, count=1)
    return text


def legend_outside(ax, handles=None, labels=None, **options):
    """The axes' legend to the right of its plot area, never on the data ('best' still covers lines when every
    corner holds one); constrained layout narrows the axes to make room. The one way the reports draw a legend."""
    args = (handles, labels) if handles is not None else ()
    options = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, **options}
    return ax.legend(*args, **options)
