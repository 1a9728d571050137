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
import dataclasses
import shlex
import sys
from pathlib import Path

from compiler import __version__, progress
from compiler.config import (BUDGET_OBJECTIVES, DEFAULT_DRIFT_TIMES, DEFAULT_GEN_LEN, DEFAULT_SEQ_LEN, DEVICES, HWA_STEPS, OBJECTIVES,
                             OPTIONS, Hwa, RunConfig, Simulation, from_options)
from compiler.dse import SWEEP_USAGE, add_parser as add_sweep_parser  # the parser part only: no torch, no ray
from compiler.errors import UserError

EXIT_USER_ERROR = 2


USAGE = f"""aimc-compile [compile] MODEL --hw SPEC [--out DIR] [options]
       aimc-compile report DIR
       aimc-compile compare DIR [DIR ...] [--out FILE_OR_DIR]
       {SWEEP_USAGE}
       aimc-compile validate [--json PATH]                            the cost model against published silicon
       aimc-compile --version"""
# subcommands that parse their own arguments: name -> the module whose main(argv) -> int runs them
DELEGATED: dict[str, str] = {"validate": "compiler.backends.estimator.validate"}
COMMANDS = ("compile", "report", "compare", "sweep", *DELEGATED)
COMPARE_OUT = Path("aimc-out") / "compare"
class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: one line, exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"aimc-compile: error: {message} (see {self.prog} --help)\n")


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
    compile_.add_argument("--seq-len", type=int, help=f"sequence length (default {DEFAULT_SEQ_LEN})")
    compile_.add_argument("--batch", type=int, help="batch size for the cost estimate (default 1)")
    compile_.add_argument("--gen-len", type=int,
                          help="causal LMs: tokens decoded after the --seq-len prompt, for the prefill/decode cost "
                               f"(default {DEFAULT_GEN_LEN}, fewer if the model's positions end sooner)")
    compile_.add_argument("--baseline", metavar="SPEC",
                          help="the digital baseline the cost compares against: a YAML path or a built-in name "
                               "(digital_int8: TPU v4i class, the default; gpu_h100: H100 SXM class)")
    compile_.add_argument("--baseline-scale", metavar="SCALE",
                          help="how many baseline chips: as-spec (default), iso-area or iso-power (as much "
                               "silicon or power as the AIMC chips), or chips=N")
    compile_.add_argument("--allocation",
                          help="tile allocation: auto (default: searches the others with the cost schedule for "
                               "--objective), naive, fused, packed (fewest tiles), layered (each layer on one chip "
                               "where it fits) or slack (packing within the pipeline's slack)")
    compile_.add_argument("--objective", choices=OBJECTIVES,
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
    compile_.add_argument("--drift-times", help=f"drift times to simulate (default {DEFAULT_DRIFT_TIMES})")
    compile_.add_argument("--seeds", type=int,
                          help=f"programmed chip instances per drift time (default {Simulation.seeds})")
    from compiler.sentences import DEFAULT_EVAL_SENTENCES  # no torch: --help stays fast
    compile_.add_argument("--eval-sentences", type=int, metavar="N",
                          help="--simulate without --eval: built-in English sentences to measure fidelity on (default "
                               f"{DEFAULT_EVAL_SENTENCES}: 32 written for this project, then the Python language "
                               "reference's prose; fewer run faster, docs/accuracy.md)")
    compile_.add_argument("--gen-tokens", type=int,
                          help="--simulate on a causal LM: tokens generated greedily per prompt through the simulated "
                               "chip with its KV cache, against FP generation (default "
                               f"{Simulation.gen_tokens}; --gen-len sets the decode "
                               "steps the cost estimate prices)")
    compile_.add_argument("--eval", dest="eval_data", help="GLUE-format task directory for task metrics")
    compile_.add_argument("--calibration", type=int,
                          help="calibration sequences for DAC/ADC ranges (default: 32 with --simulate, else 0, "
                               "since mapping and cost do not depend on ranges; 0 = no calibration)")
    compile_.add_argument("--no-pt-opt", action="store_true", help="skip the post-training range optimizations")
    compile_.add_argument("--accuracy-budget", type=float, metavar="DELTA",
                          help="choose per weight block analog at an ADC resolution, analog with redundancy or "
                               "digital (the spec's block_options) to minimize --budget-objective while the "
                               "simulated drop of --budget-metric from FP stays within DELTA, verified on 5 chips "
                               "(needs --simulate; docs/accuracy_budget.md)")
    compile_.add_argument("--budget-metric", metavar="METRIC",
                          help="the metric of --accuracy-budget (default: the run's headline metric, e.g. "
                               "embedding_cosine_mean or task_accuracy)")
    compile_.add_argument("--budget-at", metavar="TIME",
                          help="the drift time of --accuracy-budget (default: the last of --drift-times)")
    compile_.add_argument("--budget-objective", choices=BUDGET_OBJECTIVES,
                          help="what --accuracy-budget minimizes: energy per inference (default), latency or tiles")
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
    compile_.add_argument("--hwa-lr", type=float, default=Hwa.lr,
                          help=f"HWA fine-tuning learning rate (default {Hwa.lr})")
    compile_.add_argument("--hwa-batch", type=int, default=Hwa.batch,
                          help=f"HWA fine-tuning batch size (default {Hwa.batch})")
    compile_.add_argument("--device", choices=DEVICES, help="device for simulation (default cpu)")
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
    if argv[:1] and argv[0] in DELEGATED:
        import importlib
        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    try:
        args = _parse(argv)
        if args.subcommand in RENDER_COMMANDS:
            return RENDER_COMMANDS[args.subcommand](args)
        progress.set_level(progress.QUIET if args.quiet else progress.VERBOSE if args.verbose else progress.NORMAL)
        command = "aimc-compile " + shlex.join(argv)
        if args.subcommand == "sweep":
            from compiler.dse import command as sweep_command
            return sweep_command(args, command)
        compile_command(args, command)
        return 0
    except (UserError, SchemaError) as exc:
        print(f"aimc-compile: error: {progress.printable(exc)}", file=sys.stderr)  # names may hold escapes
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
    """`aimc-compile report DIR`: re-render DIR/report.html from its JSON (no torch)."""
    out = Path(args.dir)
    if not (out / "mapping.json").is_file():
        raise UserError(f"{out}: no mapping.json there; give a directory written by aimc-compile")
    from reports import write_report
    path = write_report(out)
    print(f"report: {progress.printable(path)}")
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    """`aimc-compile compare DIR ...`: compare.html and compare.csv from the runs' JSON (no torch)."""
    for folder in map(Path, args.dirs):
        if not (folder / "mapping.json").is_file():
            what = "no such directory" if not folder.exists() else "no mapping.json there"
            raise UserError(f"{folder}: {what}; give output directories written by aimc-compile")
    from reports.compare import compare_runs
    html, csv = compare_runs([Path(d) for d in args.dirs], Path(args.out) if args.out else COMPARE_OUT)
    print(f"compare: {progress.printable(html)} and {progress.printable(csv)}")
    return 0


RENDER_COMMANDS = {"report": _report_command, "compare": _compare_command}  # from the JSON alone: no torch


def compile_command(args: argparse.Namespace, command: str) -> Path:
    """`aimc-compile compile`: the flags as a RunConfig, run into --out (compiler/runner.py)."""
    from compiler.runner import run
    config = config_from_args(args)
    from compiler.outputs import safe_name  # a model named `..` must not make the current folder the output
    out = Path(args.out or Path("aimc-out") / safe_name(args.model.rstrip("/").split("/")[-1], "model"))
    result = run(config, out, command=command)
    # the final line: printed even with --quiet
    progress.say(f"done in {result.seconds:.1f} s; report: {out / 'report.html'}", progress.QUIET)
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The compile flags as a RunConfig; every flag's value checked, also those of a group that is off
    (--seeds without --simulate, --hwa-steps without --hwa-finetune), before anything is read or loaded."""
    from compiler.hw_spec import parse_override
    from compiler.runner import problems
    overrides = dict(parse_override(text) for text in args.overrides)
    options = {name: getattr(args, name) for name in OPTIONS if name != "pt_opt"}
    config = from_options(args.model, args.hw, overrides, no_pt_opt=args.no_pt_opt, **options)
    hwa = Hwa(data=args.hwa_finetune or None, steps=args.hwa_steps, lr=args.hwa_lr, batch=args.hwa_batch,
              on_eval_data=args.hwa_on_eval_data)
    every = from_options(args.model, args.hw, overrides, **{**options, "simulate": True, "eval_data": None})
    errors = problems(dataclasses.replace(every, hwa=hwa))
    if errors:
        raise UserError("; ".join(errors))
    return dataclasses.replace(config, hwa=hwa if args.hwa_finetune is not None else None)


if __name__ == "__main__":
    sys.exit(main())
