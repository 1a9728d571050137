"""aimc-compile: the command line.

    aimc-compile MODEL --hw SPEC [--out DIR] [options]     map, estimate, (simulate), report
    aimc-compile report DIR                                 re-render DIR/report.html from its JSON

Outputs are written into a staging directory next to DIR and moved into place only when complete,
so a failed run leaves nothing half-written. User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from compiler.errors import UserError

EXIT_USER_ERROR = 2
# every file or directory a run can write into --out
OUTPUTS = ("mapping.json", "cost.json", "accuracy.json", "hwa.json", "hwa_model", "report.html")
HWA_STEPS = 40  # all-MiniLM-L6-v2: under a minute on a 2-core CPU, most of the gain (docs/hwa.md)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aimc-compile",
        description="Map a transformer onto an analog in-memory-computing (PCM) chip, estimate its energy and "
                    "latency, simulate its accuracy, and write a report. `aimc-compile report DIR` re-renders a report.")
    parser.add_argument("model", help="Hugging Face name (roberta-base, sentence-transformers/all-MiniLM-L6-v2, ...) "
                                      "or a local checkpoint directory")
    parser.add_argument("--hw", required=True, help="hardware spec: a YAML path or a built-in name (pcm_1M, hermes)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec field, e.g. --set adc.bits=6 (repeatable; null = ideal)")
    parser.add_argument("--out", help="output directory (default aimc-out/<model>)")
    parser.add_argument("--task", help="sequence-classification, feature-extraction, causal-lm or masked-lm "
                                       "(default: the model's natural task)")
    parser.add_argument("--seq-len", type=int, default=128, help="sequence length (default 128)")
    parser.add_argument("--batch", type=int, default=1, help="batch size for the cost estimate (default 1)")
    parser.add_argument("--allocation", default="packed", help="tile allocation: naive, fused or packed (default)")
    parser.add_argument("--simulate", action="store_true", help="simulate accuracy on the noisy chip")
    parser.add_argument("--drift-times", default="1s,1h,1d,1y", help="drift times to simulate (default 1s,1h,1d,1y)")
    parser.add_argument("--seeds", type=int, default=3, help="programmed chip instances per drift time (default 3)")
    parser.add_argument("--eval", dest="eval_data", help="GLUE-format task directory for task metrics")
    parser.add_argument("--calibration", type=int, default=None,
                        help="calibration sequences for DAC/ADC ranges (default: 32 with --simulate, else 0, since "
                             "mapping and cost do not depend on ranges; 0 = no calibration)")
    parser.add_argument("--no-pt-opt", action="store_true", help="skip the post-training range optimizations")
    parser.add_argument("--hwa-finetune", nargs="?", const="", default=None, metavar="DATA",
                        help="hardware-aware fine-tuning before compiling (put it after MODEL): DATA is a GLUE task "
                             "directory (task loss) or a text file, one sentence per line (distillation from the FP "
                             "model); without DATA, built-in sentences. Saves the checkpoint in the output directory")
    parser.add_argument("--hwa-on-eval-data", action="store_true",
                        help="allow --hwa-finetune to train on the very examples --eval scores (the scores then "
                             "overstate what the chip does on unseen data)")
    parser.add_argument("--hwa-steps", type=int, default=HWA_STEPS, help=f"HWA fine-tuning steps (default {HWA_STEPS})")
    parser.add_argument("--hwa-lr", type=float, default=1e-4, help="HWA fine-tuning learning rate (default 1e-4)")
    parser.add_argument("--hwa-batch", type=int, default=16, help="HWA fine-tuning batch size (default 16)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device for simulation")
    return parser


def main(argv: list[str] | None = None) -> int:
    from reports.schema import SchemaError  # the report's error for unreadable or invalid JSON outputs
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            return _report_command(argv[1:])
        args = build_parser().parse_args(argv)
        run_compile(args, command="aimc-compile " + shlex.join(argv))
        return 0
    except (UserError, SchemaError) as exc:
        print(f"aimc-compile: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aimc-compile: interrupted", file=sys.stderr)
        return 130


def _report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aimc-compile report", description="re-render report.html from the JSON")
    parser.add_argument("dir", help="an output directory holding mapping.json (and cost.json, accuracy.json)")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    if not (out / "mapping.json").is_file():
        raise UserError(f"{out}: no mapping.json there; give a directory written by aimc-compile")
    from reports import write_report
    path = write_report(out)
    print(f"report: {path}")
    return 0


def run_compile(args: argparse.Namespace, command: str) -> Path:
    from compiler.hw_spec import load_hw_spec, parse_override
    from compiler.models import load_model
    from compiler.pipeline import compile_model

    overrides = dict(parse_override(text) for text in args.overrides)
    simulation = _simulation_inputs(args)  # parsed up front: a bad --drift-times or --eval fails fast
    _check_training_split(args, simulation)
    out_dir = Path(args.out or Path("aimc-out") / args.model.rstrip("/").split("/")[-1])
    staging = _staging_dir(out_dir)
    try:
        started = time.perf_counter()
        hw = load_hw_spec(args.hw, overrides)
        _say(f"hardware: {hw.name} ({hw.tile.rows}x{hw.tile.cols} tiles, {hw.tile.count} per chip)")
        model, example = load_model(args.model, task=args.task, seq_len=args.seq_len)
        info = model.aimc_info
        _say(f"model: {info.name} ({info.task}), weights: {info.weights} ({info.source})")
        if info.weights == "random":
            _say("WARNING: no real weights available offline for this model: its architecture was built from a "
                 "bundled config with RANDOM weights. Mapping and cost depend only on shapes and are valid; "
                 "accuracy is not.")
        if simulation is not None and simulation[1] is not None:
            from compiler.evaluation.accuracy import check_eval_compatible, example_for_eval
            check_eval_compatible(model, simulation[1])
            example = example_for_eval(model, example, simulation[1])  # BERT pair tasks need token_type_ids
        calibration = args.calibration if args.calibration is not None else (32 if args.simulate else 0)
        if calibration < 0:
            raise UserError(f"--calibration must be >= 0 sequences (got {calibration})")
        original = None  # with --hwa-finetune: the model as loaded, the reference of every fidelity figure
        if args.hwa_finetune is not None:
            original, model = model, _hwa_finetune(model, hw, args, staging, calibration)
        placed = compile_model(model, example, hw, allocation=args.allocation, calibration=calibration,
                               pt_column_range=not args.no_pt_opt, pt_input_range=not args.no_pt_opt)
        _say(f"mapped: {placed.tiles_used} tiles ({placed.allocation}), mean utilization "
             f"{placed.mean_utilization:.1%}, {placed.chips_used} chip(s)")
        _say("ranges: " + ("not calibrated (mapping and cost do not depend on them; --simulate or --calibration N "
                           "sets them)" if calibration == 0 else
                           f"DAC/ADC per tile from {calibration} calibration sequences; post-training "
                           f"optimizations {'off (--no-pt-opt)' if args.no_pt_opt else 'on (column and input range)'}"))
        _write_json(staging / "mapping.json", {**placed.to_json(), "command": command})
        _estimate_cost(placed, args, staging)
        if simulation is not None:
            _simulate(placed, args, simulation, staging, reference_model=original)
            if original is not None:
                _simulate_without_hwa(original, example, hw, args, calibration, simulation, staging)
        _write_report(staging, command)
        _publish(staging, out_dir)
        _say(f"done in {time.perf_counter() - started:.1f} s; report: {out_dir / 'report.html'}")
        return out_dir
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _simulation_inputs(args: argparse.Namespace):
    """(drift times, GLUE data or None) for --simulate; None without it."""
    if not args.simulate:
        if args.eval_data:
            raise UserError("--eval scores the simulated chip; add --simulate")
        return None
    from compiler.evaluation.accuracy import parse_drift_times
    from compiler.evaluation.glue import load_eval_data
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1 (got {args.seeds})")
    return parse_drift_times(args.drift_times), load_eval_data(args.eval_data) if args.eval_data else None


def _check_training_split(args: argparse.Namespace, simulation) -> None:
    """--hwa-finetune must not train on the examples --eval scores, unless the user says they know."""
    if args.hwa_finetune in (None, "") or simulation is None or simulation[1] is None or args.hwa_on_eval_data:
        return
    from compiler.training.data import glue_training_source
    trained, scored = glue_training_source(args.hwa_finetune), simulation[1].source
    if trained is not None and _same_source(trained, scored):
        raise UserError(f"--hwa-finetune {args.hwa_finetune} trains on {trained}, the split --eval scores; give the "
                        f"task's training data (a directory with train.tsv), or add --hwa-on-eval-data")


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _simulate(placed, args: argparse.Namespace, simulation, staging: Path, reference_model=None) -> None:
    """accuracy.json: fidelity (and task metrics) per drift time over --seeds chip instances."""
    from compiler.evaluation.accuracy import evaluate_accuracy, summary_lines
    drift_times, eval_data = simulation
    # with PT on, the same chips (seeds) and drift times again with the ranges of passes.ranges alone:
    # the report draws both (no second calibration, the pre-PT ranges are kept in the placement)
    compare = placed.ranges_before_pt is not None
    accuracy = evaluate_accuracy(placed, drift_times, seeds=args.seeds, eval_data=eval_data, device=args.device,
                                 compare_without_pt=compare, reference_model=reference_model)
    if not compare and any(s.dac_range is not None for s in placed.segments):
        accuracy["pt_optimization"] = False  # calibrated, optimizations off (--no-pt-opt)
    _write_json(staging / "accuracy.json", accuracy)
    for line in summary_lines(accuracy):
        _say(f"accuracy: {line}")
    for line in summary_lines({**accuracy, "results": accuracy.get("results_without_pt_opt") or []}):
        _say(f"accuracy, PT optimization off: {line}")


def _hwa_finetune(model, hw, args: argparse.Namespace, staging: Path, calibration: int):
    """--hwa-finetune: fine-tune through the chip as it will be compiled (same allocation, calibration and range
    optimizations), save the checkpoint and hwa.json; the tuned model."""
    from compiler.training.finetune import hwa_finetune, save_finetuned
    info = model.aimc_info
    if info.weights == "random":
        raise UserError(f"--hwa-finetune: {info.name} has RANDOM weights here (no real checkpoint offline); "
                        f"fine-tuning them for the chip means nothing. Give a checkpoint directory")
    tuned = hwa_finetune(model, hw, args.hwa_finetune or None, steps=args.hwa_steps, lr=args.hwa_lr,
                         batch_size=args.hwa_batch, seq_len=args.seq_len, device=args.device,
                         allocation=args.allocation, calibration=calibration or None,
                         pt_column_range=not args.no_pt_opt, pt_input_range=not args.no_pt_opt)
    summary = tuned.aimc_hwa
    save_finetuned(tuned, staging / "hwa_model")
    _write_json(staging / "hwa.json", {"model": info.name, "checkpoint": "hwa_model", **summary.to_dict()})
    _say(f"HWA fine-tuning: {summary.steps} steps ({summary.objective} on {summary.data}) in {summary.seconds:.1f} s, "
         f"loss {summary.losses[0]:.4g} -> {summary.losses[-1]:.4g}; checkpoint: hwa_model/")
    return tuned


def _simulate_without_hwa(original, example, hw, args: argparse.Namespace, calibration: int, simulation,
                          staging: Path) -> None:
    """The model as loaded, compiled the same way, on the same seeds and drift times: `results_without_hwa`
    in accuracy.json, so the report shows HWA on and off."""
    from compiler.evaluation.accuracy import evaluate_accuracy, summary_lines
    from compiler.pipeline import compile_model
    drift_times, eval_data = simulation
    placed = compile_model(original, example, hw, allocation=args.allocation, calibration=calibration,
                           pt_column_range=not args.no_pt_opt, pt_input_range=not args.no_pt_opt)
    without = evaluate_accuracy(placed, drift_times, seeds=args.seeds, eval_data=eval_data, device=args.device)
    path = staging / "accuracy.json"
    accuracy = json.loads(path.read_text())
    accuracy.update(hwa_finetune=True, results_without_hwa=without["results"])
    _write_json(path, accuracy)
    for line in summary_lines(without):
        _say(f"accuracy, without HWA fine-tuning: {line}")


def _estimate_cost(placed, args: argparse.Namespace, staging: Path) -> None:
    """cost.json; a spec with ideal (unpriced) converters gets no cost estimate, said plainly."""
    try:
        cost = placed.estimate(batch=args.batch, seq_len=args.seq_len)
    except UserError as exc:
        if placed.hw.dac.bits is not None and placed.hw.adc.bits is not None:
            raise
        _say(f"no cost estimate: {exc}")
        return
    _write_json(staging / "cost.json", cost.to_json())
    _say(f"cost: {cost.energy_J * 1e3:.3f} mJ and {cost.latency_s * 1e6:.1f} us per inference "
         f"(batch {args.batch}, seq {args.seq_len}), {cost.tops_per_w:.2f} TOPS/W")


def _staging_dir(out_dir: Path) -> Path:
    """A fresh directory beside out_dir; checks up front that out_dir's parent is writable."""
    parent = out_dir.resolve().parent
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a directory; choose another path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write there ({exc.strerror}); choose a writable directory") from None


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished outputs into out_dir, replacing earlier ones; outputs of an earlier run that this
    run did not make (accuracy.json of a run with --simulate, ...) are removed, so that `aimc-compile report
    DIR` never mixes two runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        made = {item.name for item in staging.iterdir()}
        for name in set(OUTPUTS) - made:
            stale = out_dir / name
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        for item in staging.iterdir():
            if item.is_dir() and (out_dir / item.name).is_dir():  # a directory (hwa_model/) replaces its old self
                shutil.rmtree(out_dir / item.name)
            item.replace(out_dir / item.name)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write there ({exc.strerror}); choose a writable directory") from None


def _write_json(path: Path, data: dict) -> None:
    """Write one JSON output after checking it, as it will be read back, against its typed definition
    (reports/schema.py): what the report reads is what the writer wrote."""
    from reports.schema import SchemaError, check_output
    text = json.dumps(data, indent=1, allow_nan=False)
    try:
        check_output(path.name, json.loads(text))
    except SchemaError as exc:  # the writer broke its own schema: a bug, not a user error
        raise RuntimeError(f"internal error, output does not match reports/schema.py: {exc}") from exc
    path.write_text(text)


def _write_report(out_dir: Path, command: str) -> None:
    from reports import write_report
    write_report(out_dir, command=command)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
