"""Installable like a real package (issue 13): the wheel works from any directory, the command line starts
without torch, its grammar (subcommands, --version, --hwa-finetune before MODEL), and the simulator says
which implementation ran.

The wheel test (marker `install`, `pytest -m install`) builds the wheel, installs it into a fresh venv
without network and compiles from a temporary directory; the rest is fast.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from compiler import __version__
from compiler.analog import native
from compiler.cli import _parse, main
from compiler.writers import cost_json, mapping_json
from test_hwa import tiny_checkpoint  # noqa: F401  (a real local checkpoint, offline)
from test_report import tiny_placed  # noqa: F401  (a compiled tiny model)

REPO = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "transformers")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **OFFLINE, **extra}


# --- packaging ---------------------------------------------------------------------------------------------

def test_every_package_of_the_tree_is_listed_in_pyproject():
    """pyproject.toml lists its packages (hw_specs/ ships as compiler.hw_specs): a new subpackage must be added."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    in_tree = {".".join(p.parent.relative_to(REPO).parts) for top in ("compiler", "passes", "reports")
               for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert in_tree <= listed, f"add to [tool.setuptools] packages: {sorted(in_tree - listed)}"
    assert setuptools["package-dir"] == {"compiler.hw_specs": "hw_specs"}


def _site_packages_of_the_dependencies() -> list[str]:
    """Where this interpreter finds the runtime dependencies: the fresh venv borrows them, so nothing is
    downloaded (torch's CPU build stays the one on disk)."""
    dirs = []
    for name in ("torch", "transformers", "yaml", "jinja2", "matplotlib", "networkx", "numpy", "tqdm", "pip"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is not installed"
        root = str(Path(spec.origin).parent.parent)
        if root not in dirs:
            dirs.append(root)
    return dirs


@pytest.mark.install
def test_wheel_installs_into_a_fresh_venv_and_compiles_from_anywhere(tmp_path):
    # build from a copy of the tree: an in-tree build/ could carry stale files into the wheel
    src = tmp_path / "src"
    for name in ("compiler", "passes", "reports", "hw_specs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("aimc_compile-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"compiler/hw_specs/{n}.yaml" for n in ("pcm_1M", "hermes", "digital_int8")}
    expected |= {f"compiler/model_configs/{p.name}" for p in (REPO / "compiler" / "model_configs").glob("*.json")}
    expected |= {"compiler/analog/kernels.c", "reports/templates/report.html.j2"}
    assert expected <= names, sorted(expected - names)

    # a fresh venv whose only extra is a path to the installed dependencies
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "aimc_test_dependencies.pth").write_text("\n".join(_site_packages_of_the_dependencies()) + "\n")
    # with dependency resolution but no index: the ranges must accept what is installed, torch included,
    # and leave it where it is (nothing but the package itself lands in the fresh venv)
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300, env=_env())
    assert install.returncode == 0, install.stderr[-3000:]
    added = {p.name.split("-")[0].lower() for p in Path(purelib).glob("*.dist-info")}
    assert added == {"aimc_compile"}, added
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert requires and not [r for r in requires if "==" in r], requires   # ranges, not pins

    work = tmp_path / "elsewhere"   # not the repository: nothing may come from the source tree
    work.mkdir()
    spec_copy = work / "my_chip.yaml"
    shutil.copy(REPO / "hw_specs" / "pcm_1M.yaml", spec_copy)
    env = _env(AIMC_CACHE_DIR=str(tmp_path / "cache"))
    probe = ("import json, compiler, compiler.hw_spec as h\n"
             "from compiler.analog import native\n"
             "print(json.dumps({'file': compiler.__file__, 'builtin': h.builtin_spec_names(),\n"
             "                  'baseline': h.load_baseline_spec().name, 'by_path': h.load_hw_spec('my_chip.yaml').name,\n"
             "                  'native': native.available()}))\n")
    run = subprocess.run([str(python), "-c", probe], cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout)
    assert Path(found["file"]).is_relative_to(venv), found
    assert {"pcm_1M", "hermes"} <= set(found["builtin"]) and "digital_int8" not in found["builtin"]
    assert found["baseline"] and found["by_path"] == "pcm_1M"
    if shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"):  # kernels.c from the wheel, built once
        assert found["native"], run.stderr
        assert run.stderr.count("building the simulator's native kernels once") == 1
        assert str(tmp_path / "cache") in run.stderr

    script = venv / "bin" / "aimc-compile"
    version = subprocess.run([str(script), "--version"], cwd=work, capture_output=True, text=True, env=env)
    assert version.stdout.strip() == f"aimc-compile {__version__}"
    # the tiles objective (packed) reaches the lower bound ceil(85,526,016 weights / tile): 327 of 512x512, 1306 of 256x256
    for hw, tiles in (("pcm_1M", 327), ("hermes", 1306)):
        run = subprocess.run([str(script), "roberta-base", "--hw", hw, "--objective", "tiles", "--out", f"out-{hw}"], cwd=work,
                             capture_output=True, text=True, timeout=600, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        mapping = json.loads((work / f"out-{hw}" / "mapping.json").read_text())
        assert mapping["hw"] == hw and mapping["hw_file"].startswith(purelib)
        assert mapping["tiles_used"] == tiles
        assert (work / f"out-{hw}" / "cost.json").is_file()   # the digital baseline spec is package data too


# --- start-up: --help and report without torch ---------------------------------------------------------------

def test_help_and_version_import_no_torch():
    script = ("import sys\n"
              "from compiler.cli import main\n"
              "for argv in (['--help'], ['--version'], ['report', '--help']):\n"
              "    try:\n"
              "        main(argv)\n"
              "    except SystemExit as exc:\n"
              "        assert exc.code == 0, (argv, exc.code)\n"
              f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
              "assert not heavy, heavy\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=_env(PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "aimc-compile [compile] MODEL --hw SPEC" in run.stdout and "--hwa-finetune" in run.stdout
    assert f"aimc-compile {__version__}" in run.stdout


def test_report_works_where_torch_cannot_be_imported(tmp_path, tiny_placed):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    (out / "mapping.json").write_text(json.dumps(mapping_json(tiny_placed)))
    (out / "cost.json").write_text(json.dumps(cost_json(tiny_placed.estimate(batch=1, seq_len=8))))
    blocked = tmp_path / "blocked"   # packages that shadow the real ones and refuse to load
    for name in HEAVY:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    env = _env(PYTHONPATH=f"{blocked}{os.pathsep}{REPO}")
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "blocked" in check.stderr
    entry = "import sys; from compiler.cli import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", entry, "report", str(out)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "report.html").is_file() and "report:" in run.stdout


# --- the grammar --------------------------------------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"aimc-compile {__version__}"


@pytest.mark.parametrize("argv, model, data", [
    (["roberta-base", "--hw", "pcm_1M"], "roberta-base", None),
    (["compile", "roberta-base", "--hw", "pcm_1M"], "roberta-base", None),
    (["./report", "--hw", "pcm_1M"], "./report", None),                       # a checkpoint folder named report
    (["compile", "report", "--hw", "pcm_1M"], "report", None),
    (["--hw", "pcm_1M", "report"], "report", None),
    (["--hwa-finetune", "roberta-base", "--hw", "pcm_1M"], "roberta-base", ""),  # MODEL, not DATA
    (["--hwa-finetune", "data.txt", "roberta-base", "--hw", "pcm_1M"], "roberta-base", "data.txt"),
    (["roberta-base", "--hw", "pcm_1M", "--hwa-finetune", "data.txt"], "roberta-base", "data.txt"),
    (["roberta-base", "--hwa-finetune", "--hw", "pcm_1M"], "roberta-base", ""),
    (["--hwa-finetune=data.txt", "roberta-base", "--hw", "pcm_1M"], "roberta-base", "data.txt"),
])
def test_compile_grammar(argv, model, data):
    args = _parse(argv)
    assert (args.subcommand, args.model, args.hwa_finetune, args.hw) == ("compile", model, data, "pcm_1M")


def test_report_is_a_subcommand():
    args = _parse(["report", "some/dir"])
    assert (args.subcommand, args.dir) == ("report", "some/dir")


@pytest.mark.parametrize("argv, message", [
    ([], "give MODEL --hw SPEC, or report DIR"),
    (["--hwa-finetune=data.txt", "--hw", "pcm_1M"], "MODEL is required"),
    (["roberta-base"], "--hw"),
    (["report"], "DIR"),
    (["report", "a", "b"], "unrecognized arguments"),
])
def test_grammar_errors_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_report_with_compile_options_points_to_dot_slash(capsys):
    """`aimc-compile report --hw ...` is the report subcommand, so say how to compile a folder named report."""
    assert main(["report", "--hw", "pcm_1M"]) == 2
    err = capsys.readouterr().err
    assert "./report" in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_folder_named_report_compiles(tiny_checkpoint, tmp_path, monkeypatch, capsys):  # noqa: F811
    shutil.copytree(tiny_checkpoint, tmp_path / "report")
    monkeypatch.chdir(tmp_path)
    code = main(["./report", "--hw", "pcm_1M", "--task", "feature-extraction", "--seq-len", "16", "--out", "o"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "mapping.json").read_text())["weights"] == "real"


# --- the simulator says which implementation ran --------------------------------------------------------------

def test_hwa_finetune_before_model_and_the_simulator_backend(hwa_cli_run):
    """`--hwa-finetune MODEL ...` trains MODEL on built-in sentences; accuracy.json and the terminal name the
    simulator's backend and random stream (conftest's hwa_cli_run, which test_hwa checks too)."""
    code, err, out = hwa_cli_run
    assert code == 0, err
    assert "built-in sentences" in json.loads((out / "hwa.json").read_text())["data"]
    simulator = json.loads((out / "accuracy.json").read_text())["simulator"]
    if native.available():
        assert simulator == {"backend": "native", "random_stream": native.RANDOM_STREAM}
    else:
        assert simulator["backend"] == "torch" and simulator["random_stream"] == "torch-cpu-v1"
    assert f"simulator: {simulator['backend']} (" in err and simulator["random_stream"] in err
    assert simulator["random_stream"] in (out / "report.html").read_text()


def test_without_native_kernels_one_line_says_so(monkeypatch, capsys):
    from compiler.backends.simulator import simulator_backend
    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setattr(native, "_FAILED", None)
    monkeypatch.setenv("AIMC_NO_NATIVE", "1")
    info = simulator_backend("cpu")
    assert info == {"backend": "torch", "random_stream": "torch-cpu-v1",
                    "native_unavailable": "disabled by AIMC_NO_NATIVE"}
    simulator_backend("cpu")
    err = capsys.readouterr().err
    assert err.count("native kernels unavailable (disabled by AIMC_NO_NATIVE)") == 1
    assert len(err.strip().splitlines()) == 1
    assert simulator_backend("cpu", requested=False)["random_stream"] == "torch-cpu-v1"


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")), reason="no C compiler")
def test_native_kernels_build_once_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(native, "_cache_dir", lambda: tmp_path)
    native._build()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "building the simulator's native kernels once" in err
    assert str(tmp_path) in err and len(list(tmp_path.glob("aimc_kernels_*.so"))) == 1
    native._build()   # cached: silent
    assert capsys.readouterr().err == ""
