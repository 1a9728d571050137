"""`run(config, out=None)`: the whole line of one run (check, load, compile, place, ranges, estimate, simulate,
fine-tune, decode), returning typed results, and writing the output folder when `out` is given.

    from compiler import RunConfig, run
    result = run(RunConfig("roberta-base", "pcm_1M"), out="aimc-out/roberta-base")

The command line (compiler/cli.py) and each sweep point (compiler/dse/) call this; the terminal lines of a run
are said here (compiler/progress.py: stderr, one line per stage). Every check that needs no model runs before
the model loads (`check`). Outputs are staged inside `out` and swapped in when complete (compiler/outputs.py);
each JSON file is built and written once by compiler/writers.py. (Named runner.py, not run.py: a submodule
`compiler.run` would replace the function `compiler.run` as an attribute of the package once imported.)
"""
from __future__ import annotations

import contextlib
import gc
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from compiler import progress
from compiler.config import DEFAULT_GEN_LEN, RunConfig
from compiler.errors import UserError
from compiler.terminal import say_accuracy, say_cost, say_model, say_placed

_say, _timed = progress.say, progress.timed


@dataclass
class Checked:
    """What `check` resolved before any model loads."""
    hw: Any                          # the HardwareSpec with the overrides applied
    priced: bool                     # whether the spec's converters have a cost model (bits set)
    drift_times: list | None         # simulation only
    eval_data: Any = None            # GLUE data (--eval)


@dataclass
class RunResult:
    config: RunConfig
    placed: Any                      # the PlacedGraph
    cost: Any = None                 # the estimator's CostReport; None for a spec with ideal converters
    accuracy: dict | None = None     # accuracy.json's content, with --simulate
    hwa: Any = None                  # the HwaSummary of --hwa-finetune
    budget: dict | None = None       # --accuracy-budget: accuracy.json's "budget" (compiler/budget)
    files: dict[str, dict] = field(default_factory=dict)   # JSON file name -> its content
    out: Path | None = None          # the output folder, when one was written
    seconds: float = 0.0


def problems(config: RunConfig) -> list[str]:
    """Every problem of the options of `config`, one line each: RunConfig.validate's and the task and
    allocation names (defined by the model loader and the allocator)."""
    from compiler.config import config_errors
    from compiler.models import TASKS
    from compiler.placement import ALLOCATIONS
    return config_errors(config, TASKS, ALLOCATIONS)


def check(config: RunConfig, spec: Callable | None = None) -> Checked:
    """Every check that needs no model, in the order a user fixes them: the options (all at once), the
    spec and its overrides (all at once), the cost fields, the simulation inputs, the training split.
    `spec`: what loads and checks the spec, `spec(config) -> (HardwareSpec, priced)` (a sweep reuses its
    results across points); default `load_spec`."""
    errors = problems(config)
    if errors:
        raise UserError("; ".join(errors))
    if config.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available to torch on this machine; use --device cpu")
    drift_times, eval_data = _simulation_inputs(config)
    _check_training_split(config, eval_data)
    hw, priced = (spec or load_spec)(config)
    if config.budget is not None:
        _check_budget(config, hw, priced, drift_times)
    return Checked(hw, priced, drift_times, eval_data)


def _check_budget(config: RunConfig, hw, priced: bool, drift_times: list) -> None:
    """--accuracy-budget before any model loads: options to choose from, a priced spec, a drift time."""
    from compiler.block_options import check_choices
    check_choices(hw)
    if not priced:
        raise UserError("--accuracy-budget prices each option: the spec needs DAC and ADC bits (a cost model)")
    if config.budget.at is not None:
        from compiler.evaluation.accuracy import parse_drift_times
        if len(parse_drift_times(config.budget.at)) != 1:
            raise UserError(f"--budget-at {config.budget.at[:40]!r}: give one drift time, e.g. 1y")


def _choose_options(placed, config: RunConfig, checked: Checked, reference_model) -> dict:
    """--accuracy-budget: per-block options chosen, verified and set on `placed` (compiler/budget); the record."""
    from compiler.budget import choose_options
    from compiler.budget.measure import Measurer, Pricer
    from compiler.evaluation.accuracy import parse_drift_times
    budget, sim = config.budget, config.simulation
    at = parse_drift_times(budget.at)[0] if budget.at is not None else checked.drift_times[-1]
    measurer = Measurer(placed, at, budget.metric, eval_data=checked.eval_data, device=config.device,
                        eval_sentences=sim.eval_sentences, reference_model=reference_model)
    pricer = Pricer(placed, budget.objective, batch=config.shapes.batch, seq_len=config.shapes.seq_len,
                    calibration=placed.calibration_stats)
    chosen = choose_options(placed, measurer, pricer, budget.delta)
    placed.block_options = chosen.options
    return chosen.record


def load_spec(config: RunConfig, baseline: Callable | None = None) -> tuple[Any, bool]:
    """(the spec with the overrides applied, whether its cost is estimated): every problem of the file and
    the overrides at once, then the fields the estimator reads."""
    from compiler.hw_spec import load_hw_spec
    hw = load_hw_spec(config.hw, dict(config.overrides))
    if baseline is None:  # the run's baseline spec must load before any work
        from compiler.hw_spec import load_baseline_spec

        def baseline() -> Any:
            return load_baseline_spec(config.baseline)
    return hw, check_cost_fields(hw, baseline)


def check_cost_fields(hw, baseline: Callable | None = None) -> bool:
    """Whether the run estimates the cost (converters with bits: priced), after checking now that the spec has
    every field the estimator reads and that the digital baseline loads (`baseline`: a loader to reuse)."""
    if hw.dac.bits is None or hw.adc.bits is None:
        return False
    from compiler.backends.estimator import check_prices
    from compiler.hw_spec import load_baseline_spec
    check_prices(hw)
    (baseline or load_baseline_spec)()
    return True


def _simulation_inputs(config: RunConfig) -> tuple[list | None, Any]:
    sim = config.simulation
    if sim is None:
        return None, None
    from compiler.evaluation.accuracy import parse_drift_times
    from compiler.evaluation.glue import load_eval_data
    return parse_drift_times(sim.drift_times), load_eval_data(sim.eval_data) if sim.eval_data else None


def _check_training_split(config: RunConfig, eval_data) -> None:
    """HWA must not train on the examples --eval scores, unless the user says they know."""
    if config.hwa is None or not config.hwa.data or eval_data is None or config.hwa.on_eval_data:
        return
    from compiler.training.data import glue_training_source
    trained, scored = glue_training_source(config.hwa.data), eval_data.source
    if trained is not None and _same_source(trained, scored):
        raise UserError(f"--hwa-finetune {config.hwa.data} trains on {trained}, the split --eval scores; give the "
                        f"task's training data (a directory with train.tsv), or add --hwa-on-eval-data")


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


class Session:
    """What runs in one process share when they ask for the same thing: a loaded model and its example inputs,
    and the model's torch.export program for those inputs (a sweep's points differ in spec and options, rarely
    in model and shape). Holds the last `size` models. Runs with --hwa-finetune bypass it (they train)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: OrderedDict = OrderedDict()

    def model(self, config: RunConfig, materialize: bool):
        from compiler.models import load_model  # looked up at each call (tests replace it)
        key = (config.model, config.task, config.shapes.seq_len, materialize)
        if key not in self._models:
            self._models[key] = [*load_model(config.model, task=config.task, seq_len=config.shapes.seq_len,
                                             materialize=materialize), {}]
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        model, example, _ = self._models[key]
        return model, example

    def exported(self, model, example, variant: Any = None):
        """The export of `model` for `example` (`variant`: what made the example differ, e.g. eval data)."""
        from compiler.frontend import export_model
        for entry in self._models.values():
            if entry[0] is model:
                if variant not in entry[2]:
                    entry[2][variant] = export_model(model, example)
                return entry[2][variant]
        return export_model(model, example)


def input_paths(config: RunConfig) -> tuple[str | None, ...]:
    """What a run reads from disk (those that are paths: a model folder, a spec file, evaluation and training
    data): the output folder never removes or replaces them, even when they lie inside it."""
    return (config.model, config.hw, config.simulation and config.simulation.eval_data,
            config.hwa and config.hwa.data)


def run(config: RunConfig, out: str | Path | None = None, *, command: str | None = None,
        evaluate: Callable | None = None, session: Session | None = None, checked: Checked | None = None,
        report: bool = True) -> RunResult:
    """One run. `out`: the output folder (mapping.json, cost.json, accuracy.json, hwa.json, report.html; None:
    results only). `command`: how the run was invoked, recorded in mapping.json and the report. `evaluate`:
    what simulates the chip instances (default evaluate_accuracy here; the sweep passes one on Ray). `session`:
    models and exports to share with other runs of this process. `checked`: `check(config)`'s result when the
    caller has it. `report`: write report.html into `out`."""
    from compiler.outputs import OutputDir
    checked = checked or check(config)
    command = command or f"compiler.run({config.model!r}, {config.hw!r})"
    started = time.perf_counter()
    with _collector_spared():
        if out is None:
            result = _run(config, checked, None, None, command, evaluate, session or Session(1))
        else:
            out = Path(out)
            with OutputDir(out, command, inputs=input_paths(config)) as output:  # checks out, locks, stages inside
                result = _run(config, checked, out, output.staging, command, evaluate, session or Session(1))
                if report:
                    with _timed("report written"):
                        render_report(output.staging, command)
                output.publish()
            result.out = out
    result.seconds = time.perf_counter() - started
    return result


_SPARING = False
YOUNG_OBJECTS = 10_000  # new objects between the collector's young passes within a run (Python's default: 700)


@contextlib.contextmanager
def _collector_spared():
    """Within a run, what each stage leaves (the model, its export, the placement's segments, the cost) is frozen
    out of the cyclic garbage collector's full passes (`_spare`), which otherwise walk all of it again every few
    hundred thousand new objects: ~5 s of CPU in a Llama-3.1-8B run, more at 70B. Frozen objects are still freed
    by reference counting; unfrozen at the end of the run (a sweep runs many in one process). Left alone when
    the caller has frozen objects itself."""
    global _SPARING
    if _SPARING or gc.get_freeze_count():
        yield
        return
    _SPARING, thresholds = True, gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, *thresholds[1:])
    try:
        yield
    finally:
        _SPARING = False
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _spare() -> None:
    if _SPARING:
        gc.freeze()


def render_report(folder: Path, command: str | None = None) -> Path:
    """report.html from the JSON files in `folder`. The renderer (reports/) is called from here and from the
    CLI only: the rest of the compiler imports nothing of reports/ but its schema (docs/architecture.md)."""
    from reports import write_report
    return write_report(folder, command=command)


def render_sweep(folder: Path) -> None:
    """sweep.csv and sweep.html from the sweep.json in `folder` (reports/sweep.py)."""
    from reports.sweep import write_sweep_files
    write_sweep_files(folder)


def _run(config: RunConfig, checked: Checked, out: Path | None, staging: Path | None, command: str, evaluate,
         session: Session) -> RunResult:
    from compiler import writers
    from compiler.models import RandomWeightsWarning
    from compiler.pipeline import compile_model
    hw, sim, calibration = checked.hw, config.simulation, config.calibration
    if config.hwa is not None:  # fine-tuning trains from the model as loaded: a model of its own
        session = Session(1)
    _say(f"hardware: {hw.name} ({hw.tile.rows}x{hw.tile.cols} tiles, {hw.tile.count} per chip)")
    if staging is not None:
        _say(f"  spec file {hw.source_file}; outputs go to {out}", progress.VERBOSE)
    with _timed("model loaded"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # say_model says it in the CLI's words
        # mapping and cost read shapes only: without simulation, calibration or fine-tuning a model without
        # real weights is built on the meta device (no random init, no weight memory; weights "none")
        values = sim is not None or calibration > 0 or config.hwa is not None
        model, example = session.model(config, values)
        say_model(model.aimc_info)
    _spare()
    _check_gen_len(model, config)
    variant = None
    if checked.eval_data is not None:
        from compiler.evaluation.accuracy import check_eval_compatible, example_for_eval
        check_eval_compatible(model, checked.eval_data)
        example = example_for_eval(model, example, checked.eval_data)  # BERT pair tasks need token_type_ids
        variant = config.simulation.eval_data
    result = RunResult(config, None)
    original = None  # with HWA: the model as loaded, the reference of every fidelity figure
    placement = dict(allocation=config.placement.allocation, calibration=calibration,
                     pt_column_range=config.placement.pt_opt, pt_input_range=config.placement.pt_opt,
                     objective=config.placement.objective, max_tiles=config.placement.max_tiles,
                     max_latency_s=config.placement.max_latency_s, seq_len=config.shapes.seq_len)
    options = None  # --accuracy-budget with --hwa-finetune: chosen on the model as loaded, then trained through
    if config.hwa is not None:
        if config.budget is not None:
            with _timed("accuracy budget, on the model as loaded"):
                loaded = compile_model(model, example, hw, exported=session.exported(model, example, variant),
                                       **placement)
                result.budget = _choose_options(loaded, config, checked, None)
                options = loaded.block_options
        original, model = model, _hwa_finetune(model, hw, config, calibration, result, options)
        if staging is not None:
            from compiler.training.finetune import save_finetuned
            try:
                save_finetuned(model, staging / "hwa_model")
            except OSError as exc:  # disk full, permission, read-only: one line with the path
                raise UserError(f"{staging / 'hwa_model'}: cannot write the fine-tuned checkpoint "
                                f"({exc.strerror or type(exc).__name__})") from None
            writers.write_json(staging / "hwa.json", result.files["hwa.json"])
    with _timed("exported, mapped and calibrated"):
        exported = session.exported(model, example, variant) if original is None else None
        _spare()
        placed = compile_model(model, example, hw, exported=exported, **placement)
        say_placed(placed, config, calibration)
    result.placed = placed
    _spare()
    if options is not None:  # chosen before fine-tuning; the tuned model's blocks bear the same names
        placed.block_options = dict(options)
    elif config.budget is not None:
        with _timed("accuracy budget"):
            result.budget = _choose_options(placed, config, checked, original)
    files = result.files
    files["mapping.json"] = writers.mapping_json(placed, full=config.outputs.full_mapping or None, command=command)
    _write(writers, staging, "mapping.json", files)
    with _timed("cost estimated"):
        if checked.priced:
            result.cost = _estimate_cost(placed, config)
            files["cost.json"] = writers.cost_json(result.cost, placed.strategies,
                                                       full=config.outputs.full_mapping or None)
            _write(writers, staging, "cost.json", files)
            say_cost(result.cost, config, files["cost.json"])
            _spare()
        else:
            _say("no cost estimate: the spec has an ideal (null-bit) DAC or ADC, which has no cost model")
    if sim is not None:
        with _timed("simulated"):
            accuracy, pt_off, decoding = _simulate(placed, config, checked, original, evaluate)
            without_hwa = None
            if original is not None:  # the model as loaded, compiled the same way, on the same chips
                before = compile_model(original, example, hw, exported=session.exported(original, example, variant),
                                       **placement)
                before.block_options = dict(placed.block_options)  # the same per-block options (same block names)
                without_hwa = _simulate_without_hwa(before, config, checked)
            result.accuracy = files["accuracy.json"] = writers.accuracy_json(
                accuracy, pt_optimization_off=pt_off, decoding=decoding,
                without_hwa=None if without_hwa is None else without_hwa["results"], budget=result.budget)
            _write(writers, staging, "accuracy.json", files)
            say_accuracy(files["accuracy.json"], without_hwa)
    return result


def _write(writers, staging: Path | None, name: str, files: dict) -> None:
    if staging is not None:
        writers.write_json(staging / name, files[name])
    else:  # no folder: still checked against its definition, as a written file would be
        from reports.schema import check_output
        check_output(name, files[name])


def _check_gen_len(model, config: RunConfig) -> None:
    """gen_len is for causal LMs and must fit the model's positions after the prompt: checked as soon as the
    model is loaded, before any mapping."""
    from compiler.models import max_positions
    info, gen_len, seq_len = model.aimc_info, config.shapes.gen_len, config.shapes.seq_len
    if gen_len is None:
        return
    if info.task != "causal-lm":
        raise UserError(f"--gen-len: {info.name} is a {info.task} model; decoding is priced for causal LMs only "
                        f"(--task causal-lm)")
    limit = max_positions(model.config)
    if seq_len + gen_len > limit:
        raise UserError(f"--seq-len {seq_len} + --gen-len {gen_len} = {seq_len + gen_len} exceeds the {limit} "
                        f"positions {info.name} accepts; shorten the prompt or the generation")


def gen_len(placed, config: RunConfig) -> int | None:
    """Decode steps to price: only for causal LMs; the default shortened to the model's positions."""
    if placed.model_info.task != "causal-lm":
        return None
    seq_len = config.shapes.seq_len
    if config.shapes.gen_len is not None:
        return config.shapes.gen_len
    room = (placed.max_positions or seq_len + DEFAULT_GEN_LEN) - seq_len
    return min(DEFAULT_GEN_LEN, room) if room >= 1 else None


def _estimate_cost(placed, config: RunConfig):
    """The estimate, with the range pass's calibration statistics when the placement kept them, so PWM input
    pulses are priced by the measured inputs (without them: full length, an upper bound on the array energy).
    `placed.calibration_stats` is set by compiler.pipeline.compile_model from passes.calibrate_ranges."""
    from compiler.backends.estimator import estimate
    return estimate(placed, batch=config.shapes.batch, seq_len=config.shapes.seq_len, gen_len=gen_len(placed, config),
                    calibration=placed.calibration_stats, baseline=config.baseline,
                    baseline_scale=config.baseline_scale)


def _hwa_finetune(model, hw, config: RunConfig, calibration: int, result: RunResult, block_options=None):
    """Fine-tune through the chip as it will be compiled (same allocation, calibration and range
    optimizations, and --accuracy-budget's per-block options); the tuned model (hwa.json's content into
    result.files)."""
    from compiler import writers
    from compiler.training.finetune import hwa_finetune
    info, hwa = model.aimc_info, config.hwa
    if info.weights == "random":
        raise UserError(f"--hwa-finetune: {info.name} has RANDOM weights here (no real checkpoint offline); "
                        f"fine-tuning them for the chip means nothing. Give a checkpoint directory")
    tuned = hwa_finetune(model, hw, hwa.data or None, steps=hwa.steps, lr=hwa.lr, batch_size=hwa.batch,
                         seq_len=config.shapes.seq_len, device=config.device,
                         allocation=config.placement.allocation, calibration=calibration or None,
                         pt_column_range=config.placement.pt_opt, pt_input_range=config.placement.pt_opt,
                         block_options=block_options)
    summary = result.hwa = tuned.aimc_hwa
    result.files["hwa.json"] = writers.hwa_json(info.name, summary)
    _say(f"HWA fine-tuning: {summary.steps} steps ({summary.objective} on {summary.data}) in {summary.seconds:.1f} s, "
         f"loss {summary.losses[0]:.4g} -> {summary.losses[-1]:.4g}; checkpoint: hwa_model/")
    return tuned


def _simulate(placed, config: RunConfig, checked: Checked, reference_model, evaluate) -> tuple[dict, bool, Any]:
    """(evaluate_accuracy over the seeds and drift times, with and without the PT optimizations when they ran;
    whether ranges were calibrated with the PT optimizations off; a causal LM's decoding figures or None)."""
    from compiler.evaluation.accuracy import evaluate_accuracy
    sim, device, drift_times = config.simulation, config.device, checked.drift_times
    # with PT on, the same chips (seeds) and drift times again with the ranges of passes.ranges alone:
    # the report draws both (no second calibration, the pre-PT ranges are kept in the placement)
    compare = placed.ranges_before_pt is not None
    chips = f"{sim.seeds} programmed chip{'s' if sim.seeds != 1 else ''}"
    times = f"{len(drift_times)} drift time{'s' if len(drift_times) != 1 else ''}"
    _say(f"simulating: {chips} x {times} ({', '.join(t.label for t in drift_times)})"
         + (", with and without the PT optimizations" if compare else "") + f", on {device}")
    accuracy = (evaluate or evaluate_accuracy)(placed, drift_times, seeds=sim.seeds, eval_data=checked.eval_data,
                                               device=device, compare_without_pt=compare,
                                               reference_model=reference_model, eval_sentences=sim.eval_sentences)
    pt_off = not compare and any(s.dac_range is not None for s in placed.segments)
    decoding = None
    if placed.model_info.task == "causal-lm":  # next-token fidelity and greedy generation with the KV cache
        from compiler.evaluation.decoding import evaluate_decoding
        decoding = evaluate_decoding(placed, drift_times, seeds=sim.seeds, gen_tokens=sim.gen_tokens, device=device,
                                     reference_model=reference_model)
    return accuracy, pt_off, decoding


def _simulate_without_hwa(placed, config: RunConfig, checked: Checked) -> dict:
    """The model as loaded on the same seeds and drift times: `results_without_hwa` in accuracy.json."""
    from compiler.evaluation.accuracy import evaluate_accuracy
    sim = config.simulation
    return evaluate_accuracy(placed, checked.drift_times, seeds=sim.seeds, eval_data=checked.eval_data,
                             device=config.device, eval_sentences=sim.eval_sentences)
