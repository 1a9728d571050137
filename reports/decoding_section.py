"""The report's noisy-decoding subsection, from accuracy.json's `decoding` record (a causal LM simulated with
--simulate): next-token fidelity and greedy generation against the FP model, per drift time."""
from __future__ import annotations

from dataclasses import dataclass

from reports import fmt
from reports.schema import AccuracyJson, DecodingRecord

# column order and short headers; a metric the record has beyond these is shown after them under its own name
COLUMNS = {
    "next_token_top1_agreement": "Next-token top-1",
    "next_token_kl_nats": "KL(FP‖chip), nats/token",
    "gen_prefix_match_tokens": "Prefix match, tokens",
    "gen_prefix_match_fraction": "Prefix match, fraction",
    "gen_token_agreement": "Token agreement",
}


@dataclass
class DecodingColumn:
    name: str
    header: str
    description: str
    higher_is_better: bool


@dataclass
class DecodingRow:
    label: str
    seconds: float
    cells: list[str]          # "mean ± std" (std only with two or more seeds), "—" for a missing value


@dataclass
class DecodingSection:
    data: DecodingRecord
    columns: list[DecodingColumn]
    rows: list[DecodingRow]
    setup: str                # one sentence: what was scored and generated
    cost: str | None          # simulated generation time per token against the FP model's


def build_decoding_section(accuracy: AccuracyJson | None) -> DecodingSection | None:
    """The subsection's content; None when accuracy.json has no decoding record."""
    record = accuracy.decoding if accuracy is not None else None
    if record is None:
        return None
    names = [n for n in COLUMNS if n in record.metrics] + [n for n in record.metrics if n not in COLUMNS]
    columns = [DecodingColumn(n, COLUMNS.get(n, n), record.metrics[n].description, record.metrics[n].higher_is_better)
               for n in names]
    rows = [DecodingRow(r.label, r.seconds, [_cell(r.mean.get(n), r.std.get(n)) for n in names])
            for r in record.results]
    setup = (f"Next-token fidelity, teacher-forced at every position of {record.sequences} sequences "
             f"({record.tokens} positions, up to {record.max_context} each; {record.source}); greedy generation of "
             f"{record.gen_tokens} tokens from {record.prompts} prompts of {record.prompt_tokens} tokens, through the "
             f"chip with its KV cache.")
    timing = record.timing_s
    cost = None
    if timing.get("chip_s_per_token") and timing.get("fp_s_per_token"):
        ratio = timing["chip_s_per_token"] / timing["fp_s_per_token"]
        cost = (f"Simulated generation took {fmt.si(timing['chip_s_per_token'], 's')} per token on the chip against "
                f"{fmt.si(timing['fp_s_per_token'], 's')} for the FP model ({fmt._sig(ratio, 3)}×), in this run.")
    return DecodingSection(record, columns, rows, setup, cost)


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return fmt._sig(mean, 4) + (f" ± {fmt._sig(std, 2)}" if std is not None else "")
