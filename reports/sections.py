"""What the energy/latency and accuracy sections show, derived from cost.json and accuracy.json (read
through reports/schema.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from reports import charts, cost_charts, decode_charts, placement_chart
from reports.schema import HEADLINE_METRICS, AccuracyJson, CostJson, CostLayer, DriftResult, Stage

# The metric a summary card shows per drift time: the task's own metric when there is one, else the
# closest fidelity measure the model type has.


@dataclass
class ComponentRow:
    name: str
    label: str
    color: str
    energy_J: float
    share: float


@dataclass
class CostSection:
    data: CostJson
    components: list[ComponentRow]          # largest first
    baseline_components: list[ComponentRow]
    bottleneck_tile: int | None
    area_components: list[ComponentRow] = field(default_factory=list)
    static_components: list[ComponentRow] = field(default_factory=list)
    decode_components: list[ComponentRow] = field(default_factory=list)   # one decode step, largest first
    ranges: list[RangeRow] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def layers(self) -> list[CostLayer]:
        return self.data.layers

    @property
    def stages(self) -> dict[str, Stage]:
        """Pipeline stages by name (a weight block or an FX node), when cost.json lists them."""
        return {stage.name: stage for stage in self.data.stages}

    def table_components(self, min_share: float = 0.01) -> tuple[list[ComponentRow], list[str]]:
        """Components that get their own column in the per-layer table, and the rest (one 'other' column)."""
        shown = [c for c in self.components if c.share >= min_share]
        rest = [c.name for c in self.components if c.share < min_share and c.energy_J > 0]
        return shown, rest


def _component_rows(parts: dict[str, float]) -> list[ComponentRow]:
    total = sum(parts.values()) or 1.0
    colors = {**cost_charts.EXTRA_COMPONENT_COLORS, **charts.COMPONENT_COLORS}
    return [ComponentRow(name, charts.COMPONENT_LABELS.get(name) or cost_charts.EXTRA_COMPONENT_LABELS.get(name)
                         or charts.component_label(name), colors.get(name, "#9aa5b1"), value, value / total)
            for name, value in sorted(parts.items(), key=lambda kv: -kv[1])]


@dataclass
class RangeRow:
    """An estimate with its range from the spec's uncertainties (cost.json `sensitivity.ranges`), as text."""
    label: str
    low: str
    value: str
    high: str


def _range_row(label: str, unit: str, low: float, value: float, high: float) -> RangeRow:
    text = cost_charts.value_text
    return RangeRow(label, text(low, unit), text(value, unit), text(high, unit))


def build_cost_section(cost: CostJson) -> CostSection:
    section = CostSection(data=cost, components=_component_rows(cost.energy_by_component_J),
                          baseline_components=_component_rows(cost.baseline.energy_by_component_J
                                                              if cost.baseline else {}),
                          bottleneck_tile=cost.schedule.bottleneck_tile if cost.schedule else None)
    figures = section.figures
    if any(v > 0 for v in cost.energy_by_component_J.values()):
        figures["components"] = charts.energy_by_component(cost)
        if cost.baseline:
            figures["baseline"] = charts.aimc_vs_baseline(cost)
    if any(layer.energy_J > 0 for layer in cost.layers):
        figures["layers"] = charts.energy_per_layer(cost)
    if cost.sweep and cost.sweep.points:
        figures["sweep"] = charts.sweep(cost)
    if cost.decode and (svg := decode_charts.decode_vs_context(cost)) is not None:
        figures["decode"] = svg
    if cost.decode and (svg := decode_charts.decode_bounds(cost)) is not None:
        figures["decode_bounds"] = svg
    if cost.decode:
        section.decode_components = _component_rows({k: v for k, v in
                                                     cost.decode.decode_step_energy_by_component_J.items() if v})
    if cost.schedule and cost.schedule.busy_steps():
        figures["tiles"] = charts.tile_busy(cost, section.bottleneck_tile)
    if (svg := placement_chart.frontier(cost.strategies)) is not None:
        figures["placement"] = svg
    if cost.area:
        section.area_components = _component_rows(cost.area.by_component_mm2)
    if cost.static:
        section.static_components = _component_rows({k: v for k, v in cost.static.by_component_W.items() if v > 0})
    if cost.sensitivity:
        section.ranges = [_range_row(label, unit, *cost.sensitivity.ranges[key])
                          for key, label, unit in (("energy_J", "Energy / batch", "J"), ("latency_s", "Latency", "s"),
                                                   ("area_mm2", "Area", "mm²")) if key in cost.sensitivity.ranges]
        for metric in ("energy_J", "area_mm2"):
            if (svg := cost_charts.tornado(cost, metric)) is not None:
                figures[f"tornado_{metric}"] = svg
    return section


@dataclass
class AccuracyCell:
    mean: float | None
    std: float | None
    ci95: float | None = None  # half-width of the 95 % confidence interval of the mean over seeds
    low: float | None = None   # that interval inside the metric's range (accuracy.json low/high); else mean -+ ci95
    high: float | None = None


@dataclass
class AccuracySection:
    data: AccuracyJson
    metrics: list[str]
    headline: str | None
    series: list[tuple[str, list[DriftResult]]]
    figure: str | None

    def label(self, metric: str) -> str:
        return charts.metric_label(metric)

    def higher_is_better(self, metric: str) -> bool:
        info = self.data.metrics.get(metric)
        return info.higher_is_better if info else True

    def description(self, metric: str) -> str:
        info = self.data.metrics.get(metric)
        return info.description if info else ""

    @staticmethod
    def cell(result: DriftResult, metric: str) -> AccuracyCell:
        mean, ci95 = result.mean.get(metric), result.ci95.get(metric)
        low, high = result.low.get(metric), result.high.get(metric)
        if (low is None or high is None) and mean is not None and ci95 is not None:  # a file from before low/high
            low, high = mean - ci95, mean + ci95
        return AccuracyCell(mean, result.std.get(metric), ci95, low, high)


def build_accuracy_section(accuracy: AccuracyJson) -> AccuracySection:
    metrics = list(accuracy.metrics)
    headline = next((m for m in HEADLINE_METRICS if m in metrics), metrics[0] if metrics else None)
    return AccuracySection(data=accuracy, metrics=metrics, headline=headline,
                           series=charts.accuracy_series(accuracy), figure=charts.accuracy_vs_drift(accuracy))
