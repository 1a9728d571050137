"""Noisy decoding of causal LMs: next-token fidelity and greedy generation through the simulated chip.

Per programmed chip (seed) and drift time, against the FP model (docs/decoders.md, "Noisy decoding"):
- next-token fidelity, teacher-forced over the evaluation sentences (compiler.sentences.EVALUATION, tokenized,
  or random token ids for a model without tokenizer), at every real position: top-1 agreement of the chip's
  next-token argmax with the FP model's, and KL(FP || chip) of the two next-token distributions, nats/token;
- greedy generation of `gen_tokens` tokens from a few prompts, each generated token fed back, on the chip with
  its KV cache and on the FP model: the prefix match (generated tokens equal to FP's before the first
  divergence) and the token agreement (positions where the two generations hold the same token).

The KV cache. The compiled graph is one exported forward pass without cache inputs (torch.export refuses a
DynamicCache input, and a static-cache export is another graph, with other nodes, that the placement does not
describe),
so the cache is kept at the simulator level: `kv_cache(chip)` puts a `CachedBlock` in front of every analog
weight block, which runs the chip's MVMs only for the positions it has not seen and returns the stored
outputs for the others. Each analog MVM (Q, K, V projections, MLP, LM head) thus runs once per token, with
its output noise drawn once, and its result is kept, as a chip keeps K and V in a digital cache; the graph's
digital ops run again over the whole prefix at each step (the past positions' outputs are discarded; the new
position reads the cached K and V). Recomputing the prefix without the
cache is NOT the same: the programmed conductances and their read noise are fixed per chip instance
(compiler/backends/simulator/block.py), but the output noise is drawn per MVM, so the past tokens' K and V
would change at every step (`generate(..., cache=False)` does that, for comparison).
The integer attention's dynamic scales (max|x| per sequence and head, compiler/analog/integer.py) span the prefix
at each step: K and V as a chip that rescales its cache would, Q over the past queries too, where a chip decoding
one token would scale the new query alone (a difference from the hardware). They also make the cache differ
from recomputing even without noise: a past token recomputed sees the later tokens' max|K| (tests/test_decoding.py).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from compiler.errors import UserError
from compiler.evaluation.accuracy import (DriftTime, _drift_times, _seed_list, build_eval_inputs, output_tensor,
                                          summarize_per_seed)
from compiler.frontend import normalize_example
from compiler.progress import bar as progress_bar

DEFAULT_GEN_TOKENS = 16     # tokens generated per prompt
DEFAULT_PROMPTS = 4         # prompts: the first evaluation sequences ...
DEFAULT_PROMPT_TOKENS = 8   # ... cut to this many tokens
DEFAULT_MAX_CONTEXT = 32    # positions per sequence scored for next-token fidelity: the FP reference holds a
                            # distribution over the vocabulary per position (gpt2: 32 x 32 x 50257 floats, 206 MB)

DECODING_METRICS = {
    "next_token_top1_agreement": ("fraction of positions whose next-token argmax on the chip equals the FP "
                                  "model's (teacher-forced over the evaluation sequences)", True),
    "next_token_kl_nats": ("KL(FP || chip) of the next-token distributions, nats per token (teacher-forced)", False),
    "gen_prefix_match_tokens": ("greedy generation with the KV cache: generated tokens equal to FP's before the "
                                "first divergence, mean over prompts", True),
    "gen_prefix_match_fraction": ("the prefix match as a fraction of the generated tokens", True),
    "gen_token_agreement": ("greedy generation: fraction of generated positions holding FP's token (after a "
                            "divergence the two continue from different contexts)", True),
}
KV_CACHE_NOTE = ("simulator-level cache: every analog block's output (K and V included) is computed once per token, "
                 "its noise drawn once, and kept; the digital ops run over the prefix again, so the integer "
                 "attention's dynamic Q, K, V scales span the prefix at each step (a chip decoding one token "
                 "would scale the new query alone)")


# --- the KV cache ------------------------------------------------------------------------------------
class CachedBlock(nn.Module):
    """One analog weight block with its outputs kept per position, for one sequence (batch 1) at a time.

    A call with the prefix of n positions runs the block on the positions beyond those already kept and
    returns all n; `reset()` starts a new sequence. The block's input may be (1, n, features) or (n, features)
    (GPT-2's Conv1D flattens batch and positions): with batch 1 the rows are the positions either way.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.in_features, self.out_features = block.in_features, block.out_features
        self.kept: torch.Tensor | None = None    # (positions, out_features)
        self.computed = 0                        # positions this block ran its MVMs on since the last reset

    def reset(self) -> None:
        self.kept, self.computed = None, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        done = 0 if self.kept is None else self.kept.shape[0]
        if rows.shape[0] < done:
            raise RuntimeError(f"{self.block.name}: the cached sequence holds {done} positions but the prefix has "
                               f"{rows.shape[0]}; reset the cache for a new sequence")
        if rows.shape[0] > done:
            new = self.block(rows[done:])
            self.kept = new if self.kept is None else torch.cat([self.kept, new])
            self.computed += new.shape[0]
        return self.kept.reshape(*lead, self.out_features)


@contextlib.contextmanager
def kv_cache(chip) -> Iterator[list[CachedBlock]]:
    """Within the block, `chip` (a SimulatedModel) runs with a CachedBlock in front of each analog block; the
    chip is restored afterwards. Yields the cached blocks (reset them before each new sequence)."""
    module = chip.graph_module
    mine = {id(b) for b in chip.blocks.values()}
    names = [name for name, child in module.named_children() if id(child) in mine]
    if not names:
        raise RuntimeError("the simulated model has no analog blocks to cache")
    originals = {name: getattr(module, name) for name in names}
    cached = []
    try:
        for name, block in originals.items():
            wrapper = CachedBlock(block)
            setattr(module, name, wrapper)   # the graph calls its submodules by attribute name at run time
            cached.append(wrapper)
        yield cached
    finally:
        for name, block in originals.items():
            setattr(module, name, block)


# --- greedy generation -------------------------------------------------------------------------------
def _token_inputs(ids: torch.Tensor, names: set[str]) -> dict[str, torch.Tensor]:
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return {k: v for k, v in inputs.items() if k in names}


def _input_names(placed) -> set[str]:
    _, kwargs = normalize_example(placed.example)
    if "input_ids" not in kwargs:
        raise UserError("noisy decoding needs a model compiled with input_ids as a keyword input")
    return set(kwargs)


def next_logits(forward, ids: torch.Tensor, names: set[str]) -> torch.Tensor:
    """The next-token logits (vocab,) after the sequence `ids` (1, n)."""
    return output_tensor(forward(**_token_inputs(ids, names)), ("logits",))[0, -1].float().cpu()


def greedy(forward, prompt: torch.Tensor, tokens: int, names: set[str],
           cache: Sequence[CachedBlock] = ()) -> list[int]:
    """`tokens` greedy tokens after `prompt` (1, p); `cache`: the chip's cached blocks, reset first."""
    for block in cache:
        block.reset()
    ids, out = prompt, []
    for _ in range(tokens):
        token = int(next_logits(forward, ids, names).argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]], dtype=ids.dtype)], dim=1)
    return out


def fp_greedy(model: nn.Module, prompt: torch.Tensor, tokens: int) -> list[int]:
    """`tokens` greedy tokens of the FP model after `prompt` (1, p), with its own (transformers) KV cache: the
    FP decoding the chip is compared with, in tokens and in time. A model that takes no past_key_values runs
    the prefix again each step."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ids = prompt.to(device)
    try:
        out = model(input_ids=ids, use_cache=True)
    except TypeError:
        return greedy(model, prompt, tokens, {"input_ids", "attention_mask"})
    generated = []
    for step in range(tokens):
        token = int(output_tensor(out, ("logits",))[0, -1].argmax())
        generated.append(token)
        if step + 1 < tokens:
            out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=out.past_key_values,
                        use_cache=True)
    return generated


def generate(chip, placed, prompt: torch.Tensor, tokens: int, cache: bool = True) -> list[int]:
    """Greedy generation on a simulated chip, with its KV cache (default) or recomputing the prefix with fresh
    output noise at every step (`cache=False`)."""
    names = _input_names(placed)
    if not cache:
        return greedy(chip, prompt, tokens, names)
    with kv_cache(chip) as blocks:
        return greedy(chip, prompt, tokens, names, blocks)


def generation_agreement(fp: Sequence[int], chip: Sequence[int]) -> tuple[int, float]:
    """(prefix match: leading tokens equal, token agreement: fraction of positions equal)."""
    prefix = next((i for i, (a, b) in enumerate(zip(fp, chip)) if a != b), min(len(fp), len(chip)))
    agree = sum(a == b for a, b in zip(fp, chip)) / len(fp) if fp else float("nan")
    return prefix, agree


# --- next-token fidelity -----------------------------------------------------------------------------
@dataclass
class _Sequences:
    """The evaluation sequences for teacher-forced scoring: model inputs and real-token masks per batch."""
    source: str
    batches: list[dict[str, torch.Tensor]]
    masks: list[torch.Tensor]          # (B, L) bool

    @property
    def tokens(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks))

    @property
    def count(self) -> int:
        return sum(m.shape[0] for m in self.masks)


def _sequences(placed, batch_size: int, max_context: int) -> _Sequences:
    inputs = build_eval_inputs(placed, None, batch_size)
    batches, masks = [], []
    for (args, kwargs), mask in zip(inputs.batches, inputs.token_masks):
        if args or "input_ids" not in kwargs:
            raise UserError("noisy decoding needs token inputs (input_ids); this model was compiled without them")
        kwargs = {k: v[:, :max_context] if isinstance(v, torch.Tensor) and v.dim() == 2 else v
                  for k, v in kwargs.items()}
        batches.append(kwargs)
        masks.append(mask[:, :max_context] if mask is not None else torch.ones_like(kwargs["input_ids"], dtype=bool))
    return _Sequences(inputs.source, batches, masks)


def _log_probs(forward, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """(real positions, vocab) next-token log-probabilities, float32 on the CPU (the FP model runs where it is)."""
    logits = output_tensor(forward(**batch), ("logits",)).float().cpu()
    return torch.log_softmax(logits[mask], dim=-1)


def next_token_fidelity(fp_log_probs: Sequence[torch.Tensor], chip_log_probs: Sequence[torch.Tensor]) -> dict:
    """Top-1 agreement and mean KL(FP || chip) in nats per position, over all positions of all batches."""
    agree = positions = 0
    kl = 0.0
    for fp, chip in zip(fp_log_probs, chip_log_probs):
        agree += int((fp.argmax(-1) == chip.argmax(-1)).sum())
        fp64, chip64 = fp.double(), chip.double()
        kl += float((fp64.exp() * (fp64 - chip64)).sum())
        positions += fp.shape[0]
    if not positions:
        return {"next_token_top1_agreement": float("nan"), "next_token_kl_nats": float("nan")}
    return {"next_token_top1_agreement": agree / positions, "next_token_kl_nats": kl / positions}


# --- the evaluation ----------------------------------------------------------------------------------
def evaluate_decoding(placed, drift_times: str | Sequence[DriftTime | float], seeds: int | Sequence[int],
                      gen_tokens: int = DEFAULT_GEN_TOKENS, prompts: int = DEFAULT_PROMPTS,
                      prompt_tokens: int = DEFAULT_PROMPT_TOKENS, max_context: int = DEFAULT_MAX_CONTEXT,
                      batch_size: int = 8, device: str = "cpu", progress: bool = True,
                      simulator_options: dict | None = None, reference_model: nn.Module | None = None) -> dict:
    """The `decoding` record of accuracy.json for a causal LM (see the module docstring): per drift time, the
    metrics of DECODING_METRICS as mean, std, ci95 and per-seed values over the programmed chips.

    `max_context`: positions per evaluation sequence scored teacher-forced; prompts are the first `prompts`
    sequences cut to `prompt_tokens`. `reference_model`: the FP model (default placed.model; the original for a
    model fine-tuned for the chip). `simulator_options` go to placed.simulator (e.g. {"hw": spec})."""
    started = time.perf_counter()
    if placed.model_info.task != "causal-lm":
        raise UserError(f"noisy decoding needs a causal LM; {placed.model_info.name} is loaded for "
                        f"{placed.model_info.task}")
    for flag, value in (("gen tokens", gen_tokens), ("prompts", prompts), ("prompt tokens", prompt_tokens),
                        ("max context", max_context), ("batch size", batch_size)):
        if value < 1:
            raise UserError(f"noisy decoding: {flag} must be >= 1 (got {value})")
    times, seed_list = _drift_times(drift_times), _seed_list(seeds)
    names = _input_names(placed)
    limit = placed.max_positions
    if limit is not None and prompt_tokens + gen_tokens > limit:
        raise UserError(f"noisy decoding: a prompt of {prompt_tokens} tokens and {gen_tokens} generated tokens exceed "
                        f"{placed.model_info.name}'s {limit} positions")
    sequences = _sequences(placed, batch_size, max_context)
    prompt_ids = _prompts(sequences, prompts, prompt_tokens)
    model = reference_model if reference_model is not None else placed.model
    steps = (1 + len(seed_list) * len(times)) * (len(sequences.batches) + len(prompt_ids))
    timing = {"fp_generate_s": 0.0, "chip_generate_s": 0.0, "chip_program_s": 0.0, "chip_forward_s": 0.0}
    with torch.no_grad(), progress_bar(total=steps, desc="decoding: FP reference", unit="step",
                                       enabled=progress) as bar:
        fp_scores = []
        for batch, mask in zip(sequences.batches, sequences.masks):
            fp_scores.append(_log_probs(model, batch, mask))
            bar.update(1)
        fp_generations = []
        for prompt in prompt_ids:
            tick = time.perf_counter()
            fp_generations.append(fp_greedy(model, prompt, gen_tokens))
            timing["fp_generate_s"] += time.perf_counter() - tick
            bar.update(1)
        per_time: list[list[dict[str, float]]] = [[] for _ in times]
        for seed in seed_list:
            for slot, drift in enumerate(times):
                bar.set_description(f"decoding: seed {seed}, t={drift.label}")
                tick = time.perf_counter()
                chip = placed.simulator(t_inference=drift.seconds, seed=seed, device=device,
                                        **(simulator_options or {}))
                timing["chip_program_s"] += time.perf_counter() - tick
                tick = time.perf_counter()
                chip_scores = []
                for batch, mask in zip(sequences.batches, sequences.masks):
                    chip_scores.append(_log_probs(chip, batch, mask))
                    bar.update(1)
                scores = next_token_fidelity(fp_scores, chip_scores)
                del chip_scores
                timing["chip_forward_s"] += time.perf_counter() - tick
                tick = time.perf_counter()
                matches = []
                with kv_cache(chip) as blocks:
                    for prompt, fp_tokens in zip(prompt_ids, fp_generations):
                        matches.append(generation_agreement(fp_tokens, greedy(chip, prompt, gen_tokens, names,
                                                                              blocks)))
                        bar.update(1)
                timing["chip_generate_s"] += time.perf_counter() - tick
                del chip
                prefix = sum(m[0] for m in matches) / len(matches)
                scores.update(gen_prefix_match_tokens=prefix, gen_prefix_match_fraction=prefix / gen_tokens,
                              gen_token_agreement=sum(m[1] for m in matches) / len(matches))
                per_time[slot].append(scores)
    chips = len(seed_list) * len(times)
    generated = len(prompt_ids) * gen_tokens
    timing["fp_s_per_token"] = timing["fp_generate_s"] / generated
    timing["chip_s_per_token"] = timing["chip_generate_s"] / (generated * chips)
    record = {
        "kv_cache": KV_CACHE_NOTE,
        "source": sequences.source,
        "sequences": sequences.count,
        "tokens": sequences.tokens,
        "max_context": max_context,
        "prompts": len(prompt_ids),
        "prompt_tokens": int(prompt_ids[0].shape[1]),
        "gen_tokens": gen_tokens,
        "metrics": {name: {"description": text, "higher_is_better": better} for name, (text, better) in DECODING_METRICS.items()},
        "results": [summarize_per_seed(t.label, t.seconds, {n: [_finite(row[n]) for row in rows] for n in DECODING_METRICS})
                    for t, rows in zip(times, per_time)],
        "fp_generation": fp_generations,
        "timing_s": timing,
        "elapsed_s": time.perf_counter() - started,
    }
    if placed.model_info.weights == "random":
        record["weights_note"] = ("RANDOM weights: the decoding figures test the machinery, not a language model's "
                                  "fidelity (a random LM's next-token distributions are nearly flat)")
    return record


def _prompts(sequences: _Sequences, count: int, tokens: int) -> list[torch.Tensor]:
    """The first `count` evaluation sequences cut to `tokens` real tokens each, (1, tokens) ids (or shorter where
    a sequence is shorter)."""
    out = []
    for batch, mask in zip(sequences.batches, sequences.masks):
        for row in range(mask.shape[0]):
            ids = batch["input_ids"][row][mask[row]][:tokens]
            if len(ids):
                out.append(ids.unsqueeze(0))
            if len(out) == count:
                return out
    if not out:
        raise UserError("noisy decoding: no evaluation sequence to prompt with")
    return out


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def summary_lines(record: dict) -> list[str]:
    """One terminal line per drift time: `t=1h: next-token top-1 0.93 +- 0.01, KL 0.012 nats/token, ...`."""
    lines = []
    for row in record["results"]:
        mean, std = row["mean"], row["std"]

        def show(name: str, digits: int) -> str:
            value = mean.get(name)
            if value is None:
                return "n/a"
            spread = std.get(name)
            return f"{value:.{digits}f}" + (f" +- {spread:.{digits}f}" if spread is not None else "")
        lines.append(f"t={row['label']}: next-token top-1 {show('next_token_top1_agreement', 3)}, "
                     f"KL {show('next_token_kl_nats', 4)} nats/token; greedy {record['gen_tokens']} tokens x "
                     f"{record['prompts']} prompts: prefix match {show('gen_prefix_match_tokens', 1)} tokens, "
                     f"token agreement {show('gen_token_agreement', 3)}")
    return lines


__all__ = ["evaluate_decoding", "kv_cache", "CachedBlock", "generate", "greedy", "generation_agreement",
           "next_token_fidelity", "summary_lines", "DEFAULT_GEN_TOKENS"]
