"""Train the small Llama-style causal LM that noisy decoding is measured on (tests/fixtures/tiny_llama).

    OMP_NUM_THREADS=1 python -m compiler.training.tiny_lm --out tests/fixtures/tiny_llama

Why: a causal LM with random weights has an almost flat next-token distribution, so "the chip agrees with FP
on the next token" says nothing about it; a model that has learned something does. Nothing is downloaded:
- text: English prose the running Python ships. The docstrings of the standard library's own modules (read
  from its .py files with `ast`, nothing imported; test suites, idlelib, lib2to3, turtledemo skipped) and the
  Python language reference's prose (compiler.sentences.reference_sentences, pydoc_data), both cut into
  sentences by compiler.sentences.prose_sentences (code, markup and fragments dropped), plus
  compiler.sentences.CALIBRATION. Held out: every HELDOUT_EVERY-th reference sentence (`heldout_texts`, for
  perplexity) and compiler.sentences.EVALUATION (what noisy decoding scores); neither is trained on;
- tokenizer: byte-level BPE (no unknown token on any text) of VOCAB entries, trained on the training text
  with the `tokenizers` package; `<s>` is prepended to every sequence, as Llama's tokenizer does;
- model: LlamaForCausalLM (MODEL below: RMSNorm, rotary, SwiGLU, grouped-query attention, untied head);
- training: next-token cross-entropy over the sentences packed into rows of ROW tokens (each sentence
  `<s> ... </s>`), AdamW, warmup then cosine decay, fixed seeds.

Determinism: one torch thread (the default here; `--threads`) with `torch.use_deterministic_algorithms`; the
same Python (the text comes from its standard library), torch and tokenizers versions and the same CPU
instruction set give the same bytes: `--check DIR` retrains and compares the SHA-256 of the weights with
DIR's. Weights are saved in float16 (half the size; the model is these rounded values) with a config whose
`dtype` is float32, so transformers loads them as float32 and every run computes in float32.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import os
import platform
import sysconfig
import time
from pathlib import Path

import torch

from compiler import sentences

VOCAB = 2048
ROW = 64                 # tokens per packed training row
HELDOUT_EVERY = 5        # every 5th reference sentence is held out
MODEL = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5,
             tie_word_embeddings=False, initializer_range=0.02)
SPECIAL = ["<pad>", "<s>", "</s>"]   # ids 0, 1, 2
STEPS, BATCH, LR, WARMUP, SEED = 1200, 16, 3e-3, 100, 0
SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "pydoc_data"}
WEIGHTS = "model.safetensors"
FIXTURE = "tests/fixtures/tiny_llama"   # the committed checkpoint this module trained (repository root relative)
FIXTURE_SHA256 = "0e972f4b8dc37b85b26cbc1e60a2528ba52e8a2823517b2826350661d3fc6049"  # its model.safetensors


# --- text ----------------------------------------------------------------------------------------------
def stdlib_sentences() -> list[str]:
    """Prose sentences of the standard library's docstrings (module, class, function), in a fixed order: files
    sorted by path, docstrings as `ast.walk` meets them, repeats dropped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not SKIPPED_DIRS & set(p.relative_to(root).parts))
    seen, kept = set(), []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a file for another Python or in another encoding: skipped the same way on every run
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for sentence in sentences.prose_sentences(ast.get_docstring(node) or ""):
                    if sentence not in seen:
                        seen.add(sentence)
                        kept.append(sentence)
    return kept


def heldout_texts() -> list[str]:
    """Reference sentences never trained on (every HELDOUT_EVERY-th), for held-out perplexity."""
    return list(sentences.reference_sentences()[::HELDOUT_EVERY])


def training_texts() -> list[str]:
    """The training sentences: stdlib docstrings, the reference's other sentences, CALIBRATION; none of the
    held-out ones nor EVALUATION."""
    reference = sentences.reference_sentences()
    held = set(heldout_texts()) | set(sentences.EVALUATION)
    train = [s for i, s in enumerate(reference) if i % HELDOUT_EVERY]
    texts = stdlib_sentences() + train + list(sentences.CALIBRATION)
    seen: set[str] = set()
    return [s for s in texts if not (s in held or s in seen or seen.add(s))]


# --- tokenizer and model -------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab: int = VOCAB):
    """A byte-level BPE tokenizer as a transformers fast tokenizer; `<s>` prepended to every sequence."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=MODEL["max_position_embeddings"])


def build_model(vocab: int = VOCAB):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2, **MODEL)
    return LlamaForCausalLM(config)


def pack(tokenizer, texts: list[str], row: int = ROW) -> torch.Tensor:
    """The sentences as one stream `<s> ... </s> <s> ...` cut into rows of `row` tokens (the tail dropped)."""
    eos = tokenizer.eos_token_id
    stream = [t for ids in tokenizer(texts, verbose=False)["input_ids"] for t in (*ids, eos)]
    n = len(stream) // row
    return torch.tensor(stream[:n * row]).view(n, row)


# --- training ------------------------------------------------------------------------------------------
def train(model, rows: torch.Tensor, steps: int = STEPS, batch: int = BATCH, lr: float = LR, warmup: int = WARMUP,
          seed: int = SEED, log_every: int = 100) -> list[tuple[int, float]]:
    """Next-token cross-entropy; batches drawn from a seeded permutation of the rows, epoch after epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    order, cursor, log = torch.randperm(len(rows), generator=generator), 0, []
    for step in range(steps):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(rows), generator=generator), 0
        ids = rows[order[cursor:cursor + batch]]
        cursor += batch
        scale = (step + 1) / warmup if step < warmup else \
            0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % log_every == 0 or step == steps - 1:
            log.append((step, round(loss.item(), 4)))
            print(f"step {step:5d}  loss {loss.item():.3f}", flush=True)
    model.eval()
    return log


@torch.no_grad()
def perplexity(forward, tokenizer, texts: list[str]) -> dict:
    """Perplexity and top-1 accuracy of the next token over `texts`, each sentence scored alone after `<s>`
    (every real token after the first is a prediction). Uniform guessing: perplexity = vocabulary size.
    `forward`: the model, or a simulated chip (placed.simulator(...)) compiled with input_ids and attention_mask."""
    from compiler.evaluation.accuracy import output_tensor
    nll = correct = count = 0.0
    for lo in range(0, len(texts), 32):
        enc = tokenizer(texts[lo:lo + 32], padding=True, return_tensors="pt")
        out = forward(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        logits = output_tensor(out, ("logits",))[:, :-1].float().cpu()
        target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
        logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll -= float(logp[mask].sum())
        correct += float((logits.argmax(-1) == target)[mask].sum())
        count += float(mask.sum())
    return {"perplexity": math.exp(nll / count), "top1": correct / count, "tokens": int(count),
            "sentences": len(texts), "uniform_perplexity": len(tokenizer)}


def weights_sha256(folder: str | Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


def build(out: Path, steps: int = STEPS, threads: int = 1) -> dict:
    """Train tokenizer and model and save the checkpoint folder `out`; return what training.json records."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    started = time.perf_counter()
    texts = training_texts()
    tokenizer = train_tokenizer(texts)
    rows = pack(tokenizer, texts)
    model = build_model(len(tokenizer))
    log = train(model, rows, steps)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(out)   # weights stored in float16 ...
    model.float()
    config = json.loads((out / "config.json").read_text())
    config["dtype"] = "float32"           # ... loaded and computed in float32 (the rounded values, exactly)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(out)
    record = {
        "command": f"python -m compiler.training.tiny_lm --out {out} --steps {steps} --threads {threads}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_sentences": len(texts), "training_tokens": int(rows.numel()), "rows": list(rows.shape),
        "steps": steps, "batch": BATCH, "lr": LR, "warmup": WARMUP, "seed": SEED, "threads": threads,
        "tokens_seen": steps * BATCH * ROW, "loss_log": log, "train_seconds": round(seconds, 1),
        "heldout": perplexity(model, tokenizer, heldout_texts()),
        "evaluation_sentences": perplexity(model, tokenizer, list(sentences.EVALUATION)),
        "weights_sha256": weights_sha256(out),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": __import__("transformers").__version__,
                     "tokenizers": __import__("tokenizers").__version__},
        "machine": platform.machine(),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: bitwise reproducible)")
    parser.add_argument("--check", type=Path, metavar="DIR",
                        help="after training, compare the weights' SHA-256 with DIR's (exit 1 if they differ)")
    args = parser.parse_args(argv)
    record = build(args.out, args.steps, args.threads)
    print(json.dumps({k: record[k] for k in ("parameters", "train_seconds", "heldout", "evaluation_sentences",
                                             "weights_sha256")}, indent=1))
    if args.check is not None:
        theirs = weights_sha256(args.check)
        print(f"{args.check}: {theirs} -> {'same' if theirs == record['weights_sha256'] else 'DIFFERENT'}")
        return 0 if theirs == record["weights_sha256"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
