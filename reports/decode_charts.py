"""The decoder section's figure: a decode step's energy per token and tokens/s against the context length, AIMC
against the digital baseline, from cost.json `decode.contexts` (read through reports/schema.py)."""
from __future__ import annotations

from matplotlib.ticker import LogLocator

from reports.charts import AIMC_COLOR, BASELINE_COLOR
from reports.fmt import si
from reports.schema import CostJson
from reports.svgfig import legend_outside, new_figure, style, to_svg


def decode_vs_context(cost: CostJson) -> str | None:
    """Two panels: J/token and tokens/s of one decode step at each context length (log-log)."""
    decode = cost.decode
    points = decode.contexts if decode else []
    if not points:
        return None
    xs = [p.context for p in points]
    fig, axes = new_figure(11.4, 2.8, ncols=2)
    with style():
        for ax, key, unit, title in ((axes[0], "energy_per_token_J", "J", "Energy per generated token"),
                                     (axes[1], "tokens_per_s", "tok/s", "Decode tokens/s")):
            ys = [getattr(p, key) for p in points]
            ax.plot(xs, ys, "o-", color=AIMC_COLOR, label=f"AIMC ({cost.hw})", ms=4)
            base = [getattr(p, "baseline_" + key) for p in points]
            if all(v is not None for v in base):
                name = cost.baseline.name if cost.baseline else "baseline"
                ax.plot(xs, base, "s--", color=BASELINE_COLOR, ms=4, label=f"digital INT8 ({name})")
            dram = [x for x, p in zip(xs, points) if p.kv_location == "dram"]
            if dram:  # where the KV cache no longer fits the chips' SRAM
                ax.axvspan(min(dram), max(xs), color="#f3e3d3", zorder=0, lw=0, label="KV cache in DRAM")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.minorticks_off()
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(lambda v, _, unit=unit: si(v, unit, 2))
            ax.axvline(decode.seq_len + decode.gen_len, color="#b9c2ce", lw=1, ls=":", zorder=0)
            ax.set_xlabel("context length (tokens)")
            ax.set_title(f"{title} vs context (batch {decode.batch})")
        legend_outside(axes[1])
    return to_svg(fig, "decode energy and speed against context length")
