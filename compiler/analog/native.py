"""The fused CPU kernels of kernels.c: built once with the system C compiler, loaded with ctypes.

Why: on a CPU, programming a chip (three normals and a few transcendental functions per device, 170M
devices for roberta-base) and the per-MVM epilogue (one output-noise normal, ADC clamp and rounding per
output of every tile) are bound by torch's single-threaded normal generator and by one memory pass per
eager op. kernels.c does each in one pass, and this module runs row ranges on several threads (ctypes
releases the GIL during a call).

The shared library is built on first use, once per machine (one line on stderr says so and where), and
cached under $AIMC_CACHE_DIR (default ~/.cache/aimc-compile), keyed by the source's hash and the compiler
flags. Where no C compiler works, `available()` is False, one line on stderr says why, and the simulator
uses its pure-torch path: the same model and distributions, a different random stream (torch.Generator).
Random streams here are counter-based per (seed, key, counter, row) with Box-Muller normals, so a result does
not depend on how many threads ran it; RANDOM_STREAM names them in accuracy.json.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("kernels.c")
# The version of kernels.c's random numbers, recorded in accuracy.json: change it whenever the same seed would
# draw different numbers (the hash, the key derivation, the normal transform), so results compare honestly.
RANDOM_STREAM = "counter-v1"
_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_FAILED: str | None = None
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0

_u64, _long, _float = ctypes.c_uint64, ctypes.c_long, ctypes.c_float
_ptr = ctypes.c_void_p


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _compile_flags() -> list[str]:
    flags = ["-O3", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-std=c11"]
    if {"avx2", "fma", "sse4_1"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma", "-msse4.1"]  # vectorized clamp/rint of the epilogue
    return flags


def _cache_dir() -> Path:
    root = os.environ.get("AIMC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "aimc-compile")
    return Path(root)


def _torch_openmp() -> Path | None:
    """The libgomp torch runs its intra-op threads on (Linux), so the kernels share that one thread pool."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "/libgomp" in line}
    return Path(sorted(paths)[0]) if len(paths) == 1 else None


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result.stderr.strip()[:300]}")


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    flags = _compile_flags()
    openmp = _torch_openmp()
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *flags, str(openmp), sys.platform]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"aimc_kernels_{key}.so"
    if not target.is_file():
        print(f"aimc-compile: building the simulator's native kernels once ({Path(compiler).name}); cached in "
              f"{target}", file=sys.stderr, flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built, obj = Path(tmp) / target.name, Path(tmp) / "kernels.o"
            if openmp is not None:
                # compile with OpenMP, link against torch's own libgomp (not the system one): one thread pool
                try:
                    _run([compiler, *flags, "-fopenmp", "-c", str(_SOURCE), "-o", str(obj)])
                    _run([compiler, "-shared", str(obj), "-o", str(built), str(openmp),
                          f"-Wl,-rpath,{openmp.parent}", "-lm"])
                except RuntimeError:
                    openmp = None
            if openmp is None:
                _run([compiler, *flags, str(_SOURCE), "-o", str(built), "-lm"])
            os.replace(built, target)  # atomic: concurrent builders never load a half-written file
    lib = ctypes.CDLL(str(target))
    lib.kernels_openmp.restype = ctypes.c_int
    lib.fill_normal.argtypes = [_ptr, _long, _u64, _u64, _u64, _u64]
    lib.fill_normal.restype = None
    lib.program_rows.argtypes = [_ptr, _long, _long, _ptr, _ptr, _u64, _u64, _long, _long, _ptr, _long, _ptr,
                                 _ptr, _ptr]
    lib.program_rows.restype = None
    lib.adc_epilogue.argtypes = [_ptr, _long, _long, _long, _ptr, _ptr, _ptr, _float, _ptr, _u64, _u64, _u64,
                                 _long, _long, _ptr]
    lib.adc_epilogue.restype = None
    lib.dac_codes.argtypes = [_ptr, _long, _long, _long, _float, _float, _ptr, _ptr]
    lib.dac_codes.restype = None
    lib.quantize_groups.argtypes = [_ptr, _long, _long, _float, _float, _ptr, _ptr, _ptr]
    lib.quantize_groups.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built (the reason is in `unavailable_reason()`)."""
    global _LIB, _FAILED
    if _LIB is not None or _FAILED is not None:
        return _LIB
    with _LOCK:
        if _LIB is None and _FAILED is None:
            if os.environ.get("AIMC_NO_NATIVE"):
                _FAILED = "disabled by AIMC_NO_NATIVE"
            else:
                try:
                    _LIB = _build()
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    _FAILED = str(exc).strip().split("\n")[0] or type(exc).__name__
            if _FAILED is not None:
                print(f"aimc-compile: native kernels unavailable ({_FAILED}); the simulator runs torch ops: same "
                      f"model, another random stream (docs/simulator.md)", file=sys.stderr, flush=True)
    return _LIB


def available() -> bool:
    return library() is not None


def unavailable_reason() -> str | None:
    library()
    return _FAILED


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _run_ranges(total: int, fn) -> None:
    """fn(start, stop) over `total` rows: one call where the kernels run OpenMP threads themselves, else
    one range per thread (ctypes releases the GIL)."""
    global _POOL, _POOL_SIZE
    threads = min(_threads(), max(1, total))
    if threads == 1 or library().kernels_openmp():
        fn(0, total)
        return
    if _POOL is None or _POOL_SIZE < threads:
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aimc-sim"), threads
    bounds = [total * i // threads for i in range(threads + 1)]
    futures = [_POOL.submit(fn, bounds[i], bounds[i + 1]) for i in range(threads)]
    for future in futures:
        future.result()


def _addr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
    if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
        raise ValueError(f"native kernels need contiguous CPU {dtype} tensors, got {t.device} {t.dtype}")


def fill_normal(n: int, seed: int, key: int, counter: int = 0, row: int = 0) -> torch.Tensor:
    """n standard normals (n even) from one stream (for tests of the generator)."""
    if n % 2:
        raise ValueError("fill_normal draws normals in Box-Muller pairs: n must be even")
    out = torch.empty(n, dtype=torch.float32)
    library().fill_normal(out.data_ptr(), n, seed, key, counter, row)
    return out


def program_rows(weight: torch.Tensor, w_max: torch.Tensor, params: torch.Tensor, seed: int, key: int,
                 out: torch.Tensor, row_mult: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Program a segment's weights and read them at t (kernels.c program_rows).

    weight (C, R) float32 with unit column stride; w_max (C,); params float64 (programming.device_params);
    out (C, R) float32 with unit column stride receives g_eff * row_mult[:, None]. Returns the per-row sums
    of the programmed and of the drifted g_eff (float64), for global drift compensation.
    """
    if weight.stride(1) != 1:
        weight = weight.contiguous()
    for t in (w_max, row_mult):
        _check(t)
    _check(params, torch.float64)
    if out.dtype != torch.float32 or out.device.type != "cpu" or out.stride(1) != 1 or out.shape != weight.shape:
        raise ValueError("program_rows: out must be a CPU float32 (C, R) tensor with unit column stride")
    rows, cols = weight.shape
    sum_prog = torch.empty(rows, dtype=torch.float64)
    sum_t = torch.empty(rows, dtype=torch.float64)
    lib = library()
    args = (weight.data_ptr(), weight.stride(0), cols, w_max.data_ptr(), params.data_ptr(), seed, key)
    tail = (out.data_ptr(), out.stride(0), row_mult.data_ptr(), sum_prog.data_ptr(), sum_t.data_ptr())
    _run_ranges(rows, lambda a, b: lib.program_rows(*args, a, b, *tail))
    return sum_prog, sum_t


def adc_epilogue(y: torch.Tensor, sigma: torch.Tensor | None, scale: torch.Tensor, dvec: torch.Tensor | None,
                 levels: int | None, bias: torch.Tensor | None, seed: int, key: int, counter: int) -> torch.Tensor:
    """y (K, N, C) -> (N, C): output noise, ADC, de-normalization and the digital sum (kernels.c)."""
    for t in (y, scale, *(x for x in (sigma, dvec, bias) if x is not None)):
        _check(t)
    chunks, rows, cols = y.shape
    out = torch.empty(rows, cols, dtype=torch.float32)
    lib = library()
    args = (y.data_ptr(), chunks, rows, cols, _addr(sigma), scale.data_ptr(), _addr(dvec),
            float(levels or 0), _addr(bias), seed, key, counter)
    _run_ranges(rows, lambda a, b: lib.adc_epilogue(*args, a, b, out.data_ptr()))
    return out


def dac_codes(x: torch.Tensor, dac_range: float | None, levels: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """DAC of a row chunk x (N, R, unit column stride): codes (N, R) and, for dac_range None, the
    per-vector range (N,) (kernels.c dac_codes; OpenMP builds only)."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.stride(1) != 1:
        raise ValueError("dac_codes needs a CPU float32 tensor with unit column stride")
    rows, cols = x.shape
    out = torch.empty(rows, cols, dtype=torch.float32)
    dvec = torch.empty(rows, dtype=torch.float32) if dac_range is None else None
    library().dac_codes(x.data_ptr(), x.stride(0), rows, cols, float(dac_range or 0.0), float(levels or 0),
                        out.data_ptr(), _addr(dvec))
    return out, dvec


def quantize_groups(x: torch.Tensor, groups: int, levels: int, lower: int,
                    scales: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes of a contiguous CPU float32 tensor in `groups` equal contiguous groups (kernels.c):
    codes clamped to [lower, levels], scale max|x| per group or `scales` (groups,). Returns (codes like x,
    step (groups,)): codes * step is the quantized value (compiler/analog/integer.py)."""
    _check(x)
    if scales is not None:
        scales = scales.reshape(groups).contiguous()
        _check(scales)
    codes = torch.empty_like(x)
    step = torch.empty(groups, dtype=torch.float32)
    library().quantize_groups(x.data_ptr(), groups, x.numel() // groups, float(levels), float(lower),
                              _addr(scales), codes.data_ptr(), step.data_ptr())
    return codes, step
