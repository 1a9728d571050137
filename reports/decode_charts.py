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
            dram = [x for x, p in zip(xs, points) if p.kv_location in ("sram+dram", "dram")]
            if dram:  # where the KV cache no longer fits the package's SRAM (part or all of it in DRAM)
                ax.axvspan(min(dram), max(xs), color="#f3e3d3", zorder=0, lw=0, label="KV cache (partly) in DRAM")
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


# what a decode step's critical path works on (cost.json bound_s), and the pipeline period beyond it
BOUND_STYLES = (("compute", "compute (tiles, digital, attention)", "#2f5f98"),
                ("memory", "memory (KV cache in DRAM)", "#e07b39"),
                ("links", "chip links", "#4b6584"),
                ("period", "busiest resource (period beyond the path)", "#b9c2ce"))


def _bound_bars(ax, labels: list[str], bounds: list[dict[str, float]], latencies: list[float | None]) -> None:
    """Stacked bars: each step's critical path by kind, topped by what the pipeline period adds beyond it."""
    xs = range(len(labels))
    bottom = [0.0] * len(labels)
    for key, label, color in BOUND_STYLES:
        if key == "period":
            values = [max((lat or 0.0) - sum(b.values()), 0.0) for b, lat in zip(bounds, latencies)]
        else:
            values = [b.get(key, 0.0) for b in bounds]
        if not any(v > 0 for v in values):
            continue
        ax.bar(xs, values, bottom=bottom, color=color, width=0.6, label=label, linewidth=0)
        bottom = [a + v for a, v in zip(bottom, values)]
    ax.set_xticks(list(xs), labels, fontsize=8.5)
    ax.yaxis.set_major_formatter(lambda v, _: si(v, "s", 2) if v else "0")
    ax.grid(axis="x", visible=False)


def decode_bounds(cost: CostJson) -> str | None:
    """What bounds a decode step: its time along the critical path spent on compute, memory and chip links,
    against the context length (the run's batch) and against the batch (the generation's final context)."""
    decode = cost.decode
    if decode is None:
        return None
    contexts = [p for p in decode.contexts if p.bound_s]
    batches = [b for b in decode.by_batch if b.decode_step_bound_s]
    if not contexts and not batches:
        return None
    panels = [p for p in ((contexts, "context"), (batches, "batch")) if p[0]]
    fig, axes = new_figure(11.4, 2.8, ncols=len(panels), squeeze=False)
    with style():
        for ax, (points, axis) in zip(axes[0], panels):
            if axis == "context":
                _bound_bars(ax, [f"{p.context:,}" for p in points], [p.bound_s for p in points],
                            [p.latency_s for p in points])
                ax.set_xlabel("context length (tokens)")
                ax.set_title(f"Decode step vs context (batch {decode.batch})")
            else:
                _bound_bars(ax, [str(b.batch) for b in points], [b.decode_step_bound_s for b in points],
                            [b.decode_step_latency_s for b in points])
                ax.set_xlabel("batch (sequences decoded together)")
                ax.set_title(f"Decode step vs batch (context {decode.seq_len + decode.gen_len:,})")
            ax.set_ylabel("time per step")
        legend_outside(axes[0][-1])
    return to_svg(fig, "what bounds a decode step: compute, memory and chip links against context and batch")
