"""Peak memory of loading a real checkpoint when only shapes are needed (issue 24, item 10): a safetensors
checkpoint of TinyLlama-1.1B's shapes (its published config.json, random bf16 weights: no hub download) loaded
whole against shapes only from its headers, and a whole cost-only `aimc-compile` run on it.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/shapes_only_load.py [--dir /tmp/tinyllama-shapes]

Each measurement runs in a fresh process (peak RSS: its ru_maxrss). The checkpoint (2.2 GB) is written once to
--dir and reused. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# TinyLlama/TinyLlama-1.1B-Chat-v1.0, config.json on the Hugging Face hub (shapes only; weights here are random)
TINYLLAMA = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                 num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)

LOAD = """
import resource, sys, time
sys.path.insert(0, ".")
from compiler import load_model
t = time.perf_counter()
model, _ = load_model(sys.argv[1], seq_len=128, materialize=sys.argv[2] == "whole")
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      model.aimc_info.values_loaded)
"""


def _write_checkpoint(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    if (folder / "model.safetensors").is_file():
        return
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(LlamaConfig(**TINYLLAMA), dtype=torch.bfloat16)
    model.save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/tinyllama-shapes")
    parser.add_argument("--tree", default=".", help="the source tree the cost-only run imports (a before/after "
                        "comparison: an export of an older commit)")
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        _write_checkpoint(Path(args.write))
        return
    folder = Path(args.dir)
    # written by a child: a process's peak RSS carries over to the children it forks, so this one stays small
    subprocess.run([sys.executable, __file__, "--write", str(folder)], check=True)
    result = {"checkpoint_bytes": sum(f.stat().st_size for f in folder.glob("*.safetensors"))}
    for mode in ("shapes", "whole"):
        out = subprocess.run([sys.executable, "-c", LOAD, str(folder), mode], check=True, capture_output=True,
                             text=True).stdout
        seconds, rss, loaded = out.split()
        result[f"load_{mode}"] = {"seconds": round(float(seconds), 2), "peak_rss_bytes": int(rss),
                                  "values_loaded": loaded == "True"}
    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", "import resource, sys; sys.path.insert(0, sys.argv.pop(1)); "
                          "from compiler.cli import main; code = main(sys.argv[1:]); "
                          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr); "
                          "sys.exit(code)", args.tree, str(folder), "--hw", "pcm_1M", "--seq-len", "128", "--quiet",
                          "--out", str(folder.parent / (folder.name + "-run"))],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": args.tree})
    result["cost_only_run"] = {"seconds": round(time.perf_counter() - t, 1),
                               "peak_rss_bytes": int(run.stderr.strip().splitlines()[-1])}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
