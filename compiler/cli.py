"""aimc-compile: the command line.

    aimc-compile [compile] MODEL --hw SPEC [--out DIR] [options]     map, estimate, (simulate), report
    aimc-compile report DIR                                           re-render DIR/report.html from its JSON
    aimc-compile compare DIR [DIR ...] [--out FILE_OR_DIR]            runs side by side: compare.html, .csv
    aimc-compile sweep MODEL --hw SPEC --grid KEY=V1,V2 [...]         a grid of runs on Ray: sweep.html (compiler/dse)
    aimc-compile --version

Imports stay lazy (inside the functions that need them): `--help`, `--version`, `report` and `compare` load
neither torch nor transformers.

Terminal output goes to stderr, one line per stage; progress bars only when stderr is a terminal
(compiler/progress.py), so a pipe or a log file gets whole lines. --quiet keeps warnings, errors and the final
line; --verbose adds timings and, off a terminal, a line per finished part of a long stage.

Every argument is checked before the model loads. Outputs are staged inside DIR and swapped in only when
complete; a run removes only files an earlier run recorded in DIR's manifest (compiler/outputs.py). User errors
print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

from compiler import __version__, progress
from compiler.dse import SWEEP_USAGE, add_parser as add_sweep_parser  # the parser part only: no torch, no ray
from compiler.errors import UserError

EXIT_USER_ERROR = 2
HWA_STEPS = 40  # all-MiniLM-L6-v2: under a minute on a 2-core CPU, most of the gain (docs/hwa.md)


USAGE = f"""aimc-compile [compile] MODEL --hw SPEC [--out DIR] [options]
       aimc-compile report DIR
       aimc-compile compare DIR [DIR ...] [--out FILE_OR_DIR]
       {SWEEP_USAGE}
       aimc-compile --version"""
COMMANDS = ("compile", "report", "compare", "sweep")
COMPARE_OUT = Path("aimc-out") / "compare"
_say, _timed = progress.say, progress.timed  # a line per stage on stderr; at --verbose, how long each took


def _warn(message: str) -> None:
    """A warning the user must see: shown even with --quiet."""
    progress.say(message, progress.QUIET)


class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: one line, exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"aimc-compile: error: {message} (see {self.prog} --help)\n")


DEFAULT_GEN_LEN = 128  # decode steps priced for a causal LM when --gen-len is not given


def build_parser() -> argparse.ArgumentParser:
    """Three subcommands: `compile` (the default: `aimc-compile MODEL ...` means `aimc-compile compile MODEL
    ...`), `report` and `compare`. `main` inserts `compile` where the first word names no subcommand."""
    parser = _Parser(prog="aimc-compile", usage=USAGE, add_help=False)
    commands = parser.add_subparsers(dest="subcommand", parser_class=_Parser)
    compile_ = commands.add_parser(
        "compile", prog="aimc-compile", usage=USAGE,
        description="Map a transformer onto an analog in-memory-computing (PCM) chip, estimate its energy and "
                    "latency, simulate its accuracy, and write a report. `aimc-compile report DIR` re-renders a "
                    "report from its JSON files. `compile` may be left out; write it (or ./NAME) to compile a "
                    "checkpoint folder named report.")
    compile_.add_argument("--version", action="version", version=f"aimc-compile {__version__}")
    compile_.add_argument("model", metavar="MODEL", nargs="?",  # optional here only so --hwa-finetune can yield it
                          help="Hugging Face name (roberta-base, sentence-transformers/all-MiniLM-L6-v2, ...) "
                               "or a local checkpoint directory")
    compile_.add_argument("--hw", required=True,
                          help="hardware spec: a YAML path or a built-in name (pcm_1M, hermes)")
    compile_.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a spec field, e.g. --set adc.bits=6 (repeatable; null = ideal)")
    compile_.add_argument("--out", help="output directory (default aimc-out/<model>)")
    compile_.add_argument("--task", help="sequence-classification, feature-extraction, causal-lm or masked-lm "
                                         "(default: the model's natural task)")
    compile_.add_argument("--seq-len", type=int, default=128, help="sequence length (default 128)")
    compile_.add_argument("--batch", type=int, default=1, help="batch size for the cost estimate (default 1)")
    compile_.add_argument("--gen-len", type=int, default=None,
                          help="causal LMs: tokens decoded after the --seq-len prompt, for the prefill/decode cost "
                               f"(default {DEFAULT_GEN_LEN}, fewer if the model's positions end sooner)")
    compile_.add_argument("--allocation", default="auto",
                          help="tile allocation: auto (default: searches the others with the cost schedule for "
                               "--objective), naive, fused, packed (fewest tiles) or slack (packing within the "
                               "pipeline's slack)")
    compile_.add_argument("--objective", choices=("balanced", "tiles", "latency", "throughput"), default=None,
                          help="what --allocation auto optimizes: balanced (default: the fewest tiles within 2 %% "
                               "of the best latency), tiles, latency or throughput (these two may copy blocks onto "
                               "spare tiles)")
    compile_.add_argument("--max-tiles", type=int, help="tile budget of the mapping")
    compile_.add_argument("--max-latency", type=float, metavar="SECONDS",
                          help="latency budget of one inference, in seconds (e.g. 2e-4)")
    compile_.add_argument("--full-mapping", action="store_true",
                          help="list every tile segment in mapping.json (default: up to 10,000; beyond, runs of "
                               "a regular split rule, docs/outputs.md)")
    compile_.add_argument("--simulate", action="store_true", help="simulate accuracy on the noisy chip")
    compile_.add_argument("--drift-times", default="1s,1h,1d,1y",
                          help="drift times to simulate (default 1s,1h,1d,1y)")
    compile_.add_argument("--seeds", type=int, default=3, help="programmed chip instances per drift time (default 3)")
    from compiler.sentences import DEFAULT_EVAL_SENTENCES  # no torch: --help stays fast
    compile_.add_argument("--eval-sentences", type=int, default=DEFAULT_EVAL_SENTENCES, metavar="N",
                          help="--simulate without --eval: built-in English sentences to measure fidelity on (default "
                               f"{DEFAULT_EVAL_SENTENCES}: 32 written for this project, then the Python language "
                               "reference's prose; fewer run faster, docs/accuracy.md)")
    compile_.add_argument("--gen-tokens", type=int, default=16,
                          help="--simulate on a causal LM: tokens generated greedily per prompt through the simulated "
                               "chip with its KV cache, against FP generation (default 16; --gen-len sets the decode "
                               "steps the cost estimate prices)")
    compile_.add_argument("--eval", dest="eval_data", help="GLUE-format task directory for task metrics")
    compile_.add_argument("--calibration", type=int, default=None,
                          help="calibration sequences for DAC/ADC ranges (default: 32 with --simulate, else 0, "
                               "since mapping and cost do not depend on ranges; 0 = no calibration)")
    compile_.add_argument("--no-pt-opt", action="store_true", help="skip the post-training range optimizations")
    compile_.add_argument("--hwa-finetune", nargs="?", const="", default=None, metavar="DATA",
                          help="hardware-aware fine-tuning before compiling: DATA is a GLUE task directory (task "
                               "loss) or a text file, one sentence per line (distillation from the FP model); "
                               "without DATA, built-in sentences. Saves the checkpoint in the output directory. "
                               "The one word after it is MODEL when no other MODEL is given "
                               "(`--hwa-finetune roberta-base --hw pcm_1M`); `--hwa-finetune=DATA` is always DATA")
    compile_.add_argument("--hwa-on-eval-data", action="store_true",
                          help="allow --hwa-finetune to train on the very examples --eval scores (the scores then "
                               "overstate what the chip does on unseen data)")
    compile_.add_argument("--hwa-steps", type=int, default=HWA_STEPS,
                          help=f"HWA fine-tuning steps (default {HWA_STEPS})")
    compile_.add_argument("--hwa-lr", type=float, default=1e-4, help="HWA fine-tuning learning rate (default 1e-4)")
    compile_.add_argument("--hwa-batch", type=int, default=16, help="HWA fine-tuning batch size (default 16)")
    compile_.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device for simulation")
    talk = compile_.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="print only warnings, errors and the final line (no progress bars)")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also print how long each stage took, and a line per finished part of a long stage "
                           "when the output is not a terminal")
    report = commands.add_parser("report", prog="aimc-compile report",
                                 description="Re-render DIR/report.html from the JSON files of a run (no torch).")
    report.add_argument("dir", metavar="DIR",
                        help="an output directory holding mapping.json (and cost.json, accuracy.json)")
    compare = commands.add_parser(
        "compare", prog="aimc-compile compare",
        description="Put finished runs side by side: compare.html (one column per run, the spec values that "
                    "differ highlighted, energy and accuracy charts overlaid) and compare.csv, from the JSON "
                    "files alone (no torch).")
    compare.add_argument("dirs", metavar="DIR", nargs="+", help="output directories of aimc-compile runs")
    compare.add_argument("--out", metavar="FILE_OR_DIR",
                         help=f"a .html file (the CSV goes beside it, same name) or a directory for compare.html "
                              f"and compare.csv (default {COMPARE_OUT})")
    add_sweep_parser(commands)  # its flags live with it (compiler/dse/)
    return parser


def main(argv: list[str] | None = None) -> int:
    from reports.schema import SchemaError  # the report's error for unreadable or invalid JSON outputs
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
        if args.subcommand == "report":
            return _report_command(args)
        if args.subcommand == "compare":
            return _compare_command(args)
        progress.set_level(progress.QUIET if args.quiet else progress.VERBOSE if args.verbose else progress.NORMAL)
        if args.subcommand == "sweep":
            from compiler.dse import command as sweep_command
            return sweep_command(args, "aimc-compile " + shlex.join(argv))
        run_compile(args, command="aimc-compile " + shlex.join(argv))
        return 0
    except (UserError, SchemaError) as exc:
        print(f"aimc-compile: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("aimc-compile: interrupted", file=sys.stderr)
        return 130
    finally:
        progress.set_level(progress.NORMAL)  # main may run again in this process (tests, scripts)


def _parse(argv: list[str]) -> argparse.Namespace:
    """The command line as a namespace; `compile` is the subcommand unless the first word names one."""
    if argv[:1] == ["report"] and any(a == "--hw" or a.startswith("--hw=") for a in argv):
        raise UserError("`aimc-compile report DIR` re-renders a report; to compile a checkpoint folder named "
                        "report, write ./report (or aimc-compile compile report ...)")
    parser = build_parser()
    if not argv:
        parser.error("give MODEL --hw SPEC, or report DIR")
    args = parser.parse_args(argv if argv[0] in COMMANDS else ["compile", *argv])
    if args.subcommand == "compile" and args.model is None:
        # `--hwa-finetune MODEL --hw SPEC`: argparse gave the flag the only positional word; it is MODEL
        if args.hwa_finetune and not any(a.startswith("--hwa-finetune=") for a in argv):
            args.model, args.hwa_finetune = args.hwa_finetune, ""
        else:
            parser.error("MODEL is required: a Hugging Face name or a checkpoint directory")
    return args


def _report_command(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "mapping.json").is_file():
        raise UserError(f"{out}: no mapping.json there; give a directory written by aimc-compile")
    from reports import write_report
    path = write_report(out)
    print(f"report: {path}")
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    for folder in map(Path, args.dirs):
        if not (folder / "mapping.json").is_file():
            what = "no such directory" if not folder.exists() else "no mapping.json there"
            raise UserError(f"{folder}: {what}; give output directories written by aimc-compile")
    from reports.compare import compare_runs
    html, csv = compare_runs([Path(d) for d in args.dirs], Path(args.out) if args.out else COMPARE_OUT)
    print(f"compare: {html} and {csv}")
    return 0


def run_compile(args: argparse.Namespace, command: str, evaluate=None) -> Path:
    """One run, as `aimc-compile compile` does it. `evaluate`: what simulates the chip instances (default
    evaluate_accuracy in this process; the sweep passes one that spreads the seeds over Ray tasks)."""
    from compiler.hw_spec import load_hw_spec, parse_override
    from compiler.models import RandomWeightsWarning, load_model
    from compiler.outputs import OutputDir
    from compiler.pipeline import compile_model

    # everything that can be checked without the model, checked first: a bad flag fails in a second
    _check_arguments(args)
    overrides = dict(parse_override(text) for text in args.overrides)
    simulation = _simulation_inputs(args)  # a bad --drift-times or --eval
    _check_training_split(args, simulation)
    hw = load_hw_spec(args.hw, overrides)
    priced = _check_cost_fields(hw)
    calibration = args.calibration if args.calibration is not None else (32 if args.simulate else 0)
    out_dir = Path(args.out or Path("aimc-out") / args.model.rstrip("/").split("/")[-1])
    started = time.perf_counter()
    with OutputDir(out_dir, command) as output:  # checks --out, locks it, stages inside it
        staging = output.staging
        _say(f"hardware: {hw.name} ({hw.tile.rows}x{hw.tile.cols} tiles, {hw.tile.count} per chip)")
        _say(f"  spec file {hw.source_file}; outputs go to {out_dir}", progress.VERBOSE)
        with _timed("model loaded"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # _say_model says it in the CLI's words
            # mapping and cost read shapes only: without --simulate, calibration or fine-tuning a model without
            # real weights is built on the meta device (no random init, no weight memory; weights "none")
            values = args.simulate or calibration > 0 or args.hwa_finetune is not None
            model, example = load_model(args.model, task=args.task, seq_len=args.seq_len, materialize=values)
            _say_model(model.aimc_info)
        _check_gen_len(model, args)
        if simulation is not None and simulation[1] is not None:
            from compiler.evaluation.accuracy import check_eval_compatible, example_for_eval
            check_eval_compatible(model, simulation[1])
            example = example_for_eval(model, example, simulation[1])  # BERT pair tasks need token_type_ids
        original = None  # with --hwa-finetune: the model as loaded, the reference of every fidelity figure
        if args.hwa_finetune is not None:
            original, model = model, _hwa_finetune(model, hw, args, staging, calibration)
        with _timed("exported, mapped and calibrated"):
            placed = compile_model(model, example, hw, allocation=args.allocation, calibration=calibration,
                                   pt_column_range=not args.no_pt_opt, pt_input_range=not args.no_pt_opt,
                                   objective=args.objective, max_tiles=args.max_tiles,
                                   max_latency_s=args.max_latency, seq_len=args.seq_len)
            replicas = (f" x {placed.replicas} replicas ({placed.replicas * placed.tiles_used} tiles on "
                        f"{placed.replicas * placed.chips_used} chips)") if placed.replicas > 1 else ""
            _say(f"mapped: {placed.tiles_used} tiles ({placed.allocation}), mean cell fill "
                 f"{placed.mean_utilization:.1%}, {placed.chips_used} chip(s){replicas}")
            if placed.strategies:
                _say(tradeoff_line(placed.strategies, placed.objective))
            optimizations = "off (--no-pt-opt)" if args.no_pt_opt else "on (column and input range)"
            _say("ranges: " + ("not calibrated (mapping and cost do not depend on them; --simulate or --calibration "
                               "N sets them)" if calibration == 0 else
                               f"DAC/ADC per tile from {calibration} calibration sequences; post-training "
                               f"optimizations {optimizations}"))
        full = getattr(args, "full_mapping", False) or None  # None: compact beyond 10,000 segments
        _write_json(staging / "mapping.json", {**placed.to_json(full=full), "command": command})
        with _timed("cost estimated"):
            _estimate_cost(placed, args, staging, priced)
        if simulation is not None:
            with _timed("simulated"):
                _simulate(placed, args, simulation, staging, reference_model=original, evaluate=evaluate)
                if original is not None:
                    _simulate_without_hwa(original, example, hw, args, calibration, simulation, staging)
        with _timed("report written"):
            _write_report(staging, command)
        output.publish()
    # the final line: printed even with --quiet
    _say(f"done in {time.perf_counter() - started:.1f} s; report: {out_dir / 'report.html'}", progress.QUIET)
    return out_dir


def tradeoff_line(strategies: list[dict], objective: str) -> str:
    """The chosen mapping's tiles, latency and throughput, and what it gives up against the fastest tried."""
    chosen = next(r for r in strategies if r["chosen"])
    line = (f"placement: {objective} objective: {chosen['tiles']} tiles, {chosen['latency_s'] * 1e6:.1f} us, "
            f"{chosen['throughput_per_s']:,.0f} inferences/s" if chosen["latency_s"] is not None else
            f"placement: {objective} objective: {chosen['tiles']} tiles (no cost schedule for this spec or model)")
    timed = [r for r in strategies if r["latency_s"] is not None]
    fastest = min(timed, key=lambda r: r["latency_s"], default=None)
    if fastest is not None and fastest["latency_s"] < chosen["latency_s"] * (1 - 1e-9):
        slower = chosen["latency_s"] / fastest["latency_s"] - 1
        line += (f"; {slower:.0%} slower than {fastest['name']} ({fastest['latency_s'] * 1e6:.1f} us on "
                 f"{fastest['tiles']} tiles)")
    bottleneck = chosen.get("bottleneck")
    replicas = chosen.get("replicas") or 1
    if replicas > 1:
        line += f"; {replicas} whole replicas, each on chips of its own, each serving whole inferences"
    elif objective == "throughput" and bottleneck and not bottleneck.startswith("tile "):
        line += (f"; throughput is set by the {bottleneck}, which more tiles on the same chip do not relieve "
                 f"(--max-tiles N lets whole replicas on chips of their own raise it)")
    return line


def _check_arguments(args: argparse.Namespace) -> None:
    """The numeric flags, the names and the device, before anything is read or loaded."""
    from compiler.models import TASKS
    from compiler.placement import ALLOCATIONS
    limits = (("--seq-len", args.seq_len, 2, "tokens"), ("--batch", args.batch, 1, "sequence"),
              ("--gen-len", args.gen_len, 1, "token"),
              ("--seeds", args.seeds, 1, "chip"), ("--gen-tokens", args.gen_tokens, 1, "token"),
              ("--eval-sentences", args.eval_sentences, 1, "sentence"),
              ("--calibration", args.calibration, 0, "sequences"),
              ("--hwa-steps", args.hwa_steps, 1, "step"), ("--hwa-batch", args.hwa_batch, 1, "sequence"))
    for flag, value, least, unit in limits:
        if value is not None and value < least:
            raise UserError(f"{flag} must be >= {least} (got {value}; at least {least} {unit})")
    if not (0 < args.hwa_lr < float("inf")):
        raise UserError(f"--hwa-lr must be a positive number (got {args.hwa_lr})")
    if args.allocation not in ALLOCATIONS:
        raise UserError(f"unknown allocation {args.allocation[:60]!r}; expected one of {', '.join(ALLOCATIONS)}")
    if args.max_tiles is not None and args.max_tiles < 1:
        raise UserError(f"--max-tiles must be >= 1 (got {args.max_tiles})")
    if args.max_latency is not None and not (0 < args.max_latency < float("inf")):
        raise UserError(f"--max-latency must be a positive number of seconds (got {args.max_latency})")
    if args.task is not None and args.task not in TASKS:
        raise UserError(f"unknown task {args.task[:60]!r}; expected one of {', '.join(TASKS)}")
    if any(len(part.encode()) > 255 for part in Path(args.model).parts) or "\0" in args.model:
        raise UserError(f"model {args.model[:60]!r}: not a usable name or path (a NUL byte, or a part longer than "
                        f"255 bytes); give a checkpoint directory or a known model name")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available to torch on this machine; use --device cpu")


def _check_cost_fields(hw) -> bool:
    """Whether the run estimates the cost (converters with bits: priced), after checking now that the spec has
    every field the estimator reads and that the digital baseline loads."""
    if hw.dac.bits is None or hw.adc.bits is None:
        return False
    from compiler.backends.estimator import check_prices
    from compiler.hw_spec import load_baseline_spec
    check_prices(hw)
    load_baseline_spec()
    return True


def _say_model(info) -> None:
    _say(f"model: {info.name} ({info.task}), weights: {info.weights} ({info.source})"
         + (": shapes only, on the meta device (mapping and cost read no weight values)"
            if info.weights == "none" else ""))
    if info.weights == "random":
        _warn("WARNING: no real weights available offline for this model: its architecture was built from a "
              "bundled config with RANDOM weights. Mapping and cost depend only on shapes and are valid; "
              "accuracy is not.")
    if info.head == "random":
        shown = ", ".join(info.new_weights[:4]) + (", ..." if len(info.new_weights) > 4 else "")
        _warn(f"WARNING: the checkpoint lacks {len(info.new_weights)} weight(s) of a {info.task} model ({shown}): "
              f"they were created at RANDOM when it was loaded (a new task head). mapping.json says \"head\": "
              f"\"random\"; outputs and task metrics of an untrained head mean little.")


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


def _simulate(placed, args: argparse.Namespace, simulation, staging: Path, reference_model=None,
              evaluate=None) -> None:
    """accuracy.json: fidelity (and task metrics) per drift time over --seeds chip instances."""
    from compiler.evaluation.accuracy import evaluate_accuracy, simulator_line, summary_lines
    drift_times, eval_data = simulation
    # with PT on, the same chips (seeds) and drift times again with the ranges of passes.ranges alone:
    # the report draws both (no second calibration, the pre-PT ranges are kept in the placement)
    compare = placed.ranges_before_pt is not None
    chips = f"{args.seeds} programmed chip{'s' if args.seeds != 1 else ''}"
    times = f"{len(drift_times)} drift time{'s' if len(drift_times) != 1 else ''}"
    _say(f"simulating: {chips} x {times} ({', '.join(t.label for t in drift_times)})"
         + (", with and without the PT optimizations" if compare else "") + f", on {args.device}")
    accuracy = (evaluate or evaluate_accuracy)(placed, drift_times, seeds=args.seeds, eval_data=eval_data,
                                               device=args.device, compare_without_pt=compare,
                                               reference_model=reference_model, eval_sentences=args.eval_sentences)
    if not compare and any(s.dac_range is not None for s in placed.segments):
        accuracy["pt_optimization"] = False  # calibrated, optimizations off (--no-pt-opt)
    if placed.model_info.task == "causal-lm":  # next-token fidelity and greedy generation with the KV cache
        from compiler.evaluation.decoding import evaluate_decoding
        accuracy["decoding"] = evaluate_decoding(placed, drift_times, seeds=args.seeds, gen_tokens=args.gen_tokens,
                                                 device=args.device, reference_model=reference_model)
    _write_json(staging / "accuracy.json", accuracy)
    _say(simulator_line(accuracy))  # results compare number for number only on the same backend and stream
    for line in summary_lines(accuracy):
        _say(f"accuracy: {line}")
    for line in summary_lines({**accuracy, "results": accuracy.get("results_without_pt_opt") or []}):
        _say(f"accuracy, PT optimization off: {line}")
    if "decoding" in accuracy:
        from compiler.evaluation.decoding import summary_lines as decoding_lines
        for line in decoding_lines(accuracy["decoding"]):
            _say(f"decoding: {line}")


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
                           pt_column_range=not args.no_pt_opt, pt_input_range=not args.no_pt_opt,
                           objective=args.objective, max_tiles=args.max_tiles, max_latency_s=args.max_latency,
                           seq_len=args.seq_len)
    without = evaluate_accuracy(placed, drift_times, seeds=args.seeds, eval_data=eval_data, device=args.device,
                                eval_sentences=args.eval_sentences)
    path = staging / "accuracy.json"
    accuracy = json.loads(path.read_text())
    accuracy.update(hwa_finetune=True, results_without_hwa=without["results"])
    _write_json(path, accuracy)
    for line in summary_lines(without):
        _say(f"accuracy, without HWA fine-tuning: {line}")


def _estimate_cost(placed, args: argparse.Namespace, staging: Path, priced: bool) -> None:
    """cost.json; a spec with ideal (unpriced) converters gets no cost estimate, said plainly."""
    if not priced:
        _say("no cost estimate: the spec has an ideal (null-bit) DAC or ADC, which has no cost model")
        return
    from reports.power import component_power_W
    cost = placed.estimate(batch=args.batch, seq_len=args.seq_len, gen_len=_gen_len(placed, args))
    data = cost.to_json()
    # power beside energy, per component: the report's one definition (reports/power.py), written for scripts
    totals = data["totals"]
    data["power_by_component_W"] = component_power_W(data["energy_by_component_J"], totals["period_s"],
                                                      totals.get("static_power_W"))
    if placed.strategies:
        data["strategies"] = placed.strategies
    _write_json(staging / "cost.json", data)
    _say(f"cost: {cost.energy_J * 1e3:.3f} mJ and {cost.latency_s * 1e6:.1f} us per inference "
         f"(batch {args.batch}, seq {args.seq_len}), {cost.tops_per_w:.2f} TOPS/W")
    if cost.decode is not None:
        _say(decode_line(data["decode"]))


def _check_gen_len(model, args: argparse.Namespace) -> None:
    """--gen-len is for causal LMs and must fit the model's positions after the prompt: checked as soon as the
    model is loaded, before any mapping."""
    from compiler.models import max_positions
    info = model.aimc_info
    if args.gen_len is None:
        return
    if info.task != "causal-lm":
        raise UserError(f"--gen-len: {info.name} is a {info.task} model; decoding is priced for causal LMs only "
                        f"(--task causal-lm)")
    limit = max_positions(model.config)
    if args.seq_len + args.gen_len > limit:
        raise UserError(f"--seq-len {args.seq_len} + --gen-len {args.gen_len} = {args.seq_len + args.gen_len} "
                        f"exceeds the {limit} positions {info.name} accepts; shorten the prompt or the generation")


def _gen_len(placed, args: argparse.Namespace) -> int | None:
    """Decode steps to price: only for causal LMs; the default shortened to the model's positions."""
    if placed.model_info.task != "causal-lm":
        return None
    if args.gen_len is not None:
        return args.gen_len
    room = (placed.max_positions or args.seq_len + DEFAULT_GEN_LEN) - args.seq_len
    return min(DEFAULT_GEN_LEN, room) if room >= 1 else None


def decode_line(decode: dict) -> str:
    """The terminal's one line on a causal LM's prefill and decode (cost.json `decode`)."""
    kv = decode["kv_cache"]
    return (f"decode: time to first token {decode['ttft_s'] * 1e3:.3g} ms, {decode['tokens_per_s']:,.0f} tokens/s, "
            f"{decode['energy_per_token_J'] * 1e3:.3g} mJ/token over {decode['gen_len']} tokens (batch "
            f"{decode['batch']}); KV cache {kv['bytes'] / 2 ** 20:.3g} MiB in {kv['location'].upper()}; digital "
            f"baseline {decode['baseline_tokens_per_s']:,.0f} tokens/s, "
            f"{decode['baseline_energy_per_token_J'] * 1e3:.3g} mJ/token (weights in {decode['baseline_weights']})")


def _write_json(path: Path, data: dict) -> None:
    """Write one JSON output after checking it, as it will be read back, against its typed definition
    (reports/schema.py): what the report reads is what the writer wrote."""
    from reports.schema import SchemaError, check_output
    try:
        text = json.dumps(data, indent=1, allow_nan=False)
    except ValueError:  # inf or nan: from extreme spec values (a cost that overflows) or a broken model's outputs
        raise UserError(f"{path.name}: a result is not a finite number (inf or nan); check the spec's energy and "
                        f"latency values and the model's weights") from None
    try:
        check_output(path.name, json.loads(text))
    except SchemaError as exc:  # the writer broke its own schema: a bug, not a user error
        raise RuntimeError(f"internal error, output does not match reports/schema.py: {exc}") from exc
    path.write_text(text)


def _write_report(out_dir: Path, command: str) -> None:
    from reports import write_report
    write_report(out_dir, command=command)


if __name__ == "__main__":
    sys.exit(main())
