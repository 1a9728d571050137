"""The terminal lines of a run (compiler/runner.py): the model and its warnings, the mapping and the placement's
trade-off, the ranges, the cost and a causal LM's prefill and decode, the accuracy. Said through
compiler/progress.py (stderr, one line each)."""
from __future__ import annotations

from compiler import progress


def warn(message: str) -> None:
    """A warning the user must see: shown even with --quiet."""
    progress.say(message, progress.QUIET)


def say_model(info) -> None:
    progress.say(f"model: {info.name} ({info.task}), weights: {info.weights} ({info.source})"
                 + (": shapes only, on the meta device (mapping and cost read no weight values)"
                    if info.weights == "none" else
                    ": shapes only, read from the safetensors headers (no weight loaded: mapping and cost read no "
                    "weight values)" if not info.values_loaded else ""))
    if info.weights == "random":
        warn("WARNING: no real weights available offline for this model: its architecture was built from a "
             "bundled config with RANDOM weights. Mapping and cost depend only on shapes and are valid; "
             "accuracy is not.")
    if info.head == "random":
        shown = ", ".join(info.new_weights[:4]) + (", ..." if len(info.new_weights) > 4 else "")
        warn(f"WARNING: the checkpoint lacks {len(info.new_weights)} weight(s) of a {info.task} model ({shown}): "
             f"they were created at RANDOM when it was loaded (a new task head). mapping.json says \"head\": "
             f"\"random\"; outputs and task metrics of an untrained head mean little.")


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
    elif objective == "throughput" and bottleneck and chosen.get("bottleneck_tile") is None:
        line += (f"; throughput is set by the {bottleneck}, which more tiles on the same chip do not relieve "
                 f"(--max-tiles N lets whole replicas on chips of their own raise it)")
    return line


def decode_line(decode: dict) -> str:
    """The terminal's one line on a causal LM's prefill and decode (cost.json `decode`)."""
    kv = decode["kv_cache"]
    return (f"decode: time to first token {decode['ttft_s'] * 1e3:.3g} ms, {decode['tokens_per_s']:,.0f} tokens/s, "
            f"{decode['energy_per_token_J'] * 1e3:.3g} mJ/token over {decode['gen_len']} tokens (batch "
            f"{decode['batch']}); KV cache {kv['bytes'] / 2 ** 20:.3g} MiB in {kv['location'].upper()}; digital "
            f"baseline {decode['baseline_tokens_per_s']:,.0f} tokens/s, "
            f"{decode['baseline_energy_per_token_J'] * 1e3:.3g} mJ/token (weights in {decode['baseline_weights']})")


def say_placed(placed, config, calibration: int) -> None:
    replicas = (f" x {placed.replicas} replicas ({placed.replicas * placed.tiles_used} tiles on "
                f"{placed.replicas * placed.chips_used} chips)") if placed.replicas > 1 else ""
    progress.say(f"mapped: {placed.tiles_used} tiles ({placed.allocation}), mean cell fill "
         f"{placed.mean_utilization:.1%}, {placed.chips_used} chip(s){replicas}")
    if placed.strategies:
        progress.say(tradeoff_line(placed.strategies, placed.objective))
    optimizations = "on (column and input range)" if config.placement.pt_opt else "off (--no-pt-opt)"
    progress.say("ranges: " + ("not calibrated (mapping and cost do not depend on them; --simulate or --calibration "
                       "N sets them)" if calibration == 0 else
                       f"DAC/ADC per tile from {calibration} calibration sequences; post-training "
                       f"optimizations {optimizations}"))


def llm_cost_line(decode: dict, baseline: dict) -> str:
    """A causal LM's headline: J/token, tokens/s (aggregate and per sequence), TTFT at the run's batch, what bounds
    the decode step, and the baseline's same figures."""
    b = decode["batch"]
    return (f"cost: {decode['energy_per_token_J'] * 1e3:.3g} mJ/token, {decode['tokens_per_s']:,.0f} tokens/s "
            f"({decode['tokens_per_s'] / b:,.0f} per sequence), time to first token {decode['ttft_s'] * 1e3:.3g} ms "
            f"at batch {b} (prompt {decode['seq_len']}, {decode['gen_len']} generated); bound: {decode['bound']}; "
            f"baseline {baseline['name']} ({baseline.get('chips', 1)} chip(s), {baseline.get('scale', 'as-spec')}): "
            f"{decode['baseline_energy_per_token_J'] * 1e3:.3g} mJ/token, {decode['baseline_tokens_per_s']:,.0f} "
            f"tokens/s, TTFT {decode['baseline_ttft_s'] * 1e3:.3g} ms; bound: {decode['baseline_bound']}")


def say_cost(cost, config, data: dict) -> None:
    if cost.decode is not None:
        progress.say(llm_cost_line(data["decode"], data["baseline"]))
    progress.say(f"{'prefill' if cost.decode is not None else 'cost'}: {cost.energy_J * 1e3:.3f} mJ and "
                 f"{cost.latency_s * 1e6:.1f} us per inference (batch {config.shapes.batch}, seq "
                 f"{config.shapes.seq_len}), {cost.tops_per_w:.2f} TOPS/W")
    if cost.decode is not None:
        progress.say(decode_line(data["decode"]))
    if data.get("static"):
        progress.say(leakage_line(data["static"]))
    if validation := data.get("validation"):
        progress.say(validation_line(validation))
    for warning in (validation or {}).get("warnings", []):
        warn(f"warning: {warning}")


def leakage_line(static: dict) -> str:
    """How much of the energy is leakage, and what power gating saved (cost.json `static`)."""
    share = static.get("share_of_energy")
    line = f"leakage: {static['power_W']:.3g} W mean" + (f", {100 * share:.2g} % of the energy" if share is not None
                                                          else "")
    if static.get("decode_step_share") is not None:
        line += f", {100 * static['decode_step_share']:.2g} % of a decode step's"
    if static.get("power_gating"):
        line += (f"; idle tiles and units power-gated ({static['all_on_power_W']:.3g} W with every tile on)"
                 if static.get("all_on_power_W") is not None else "; idle tiles and units power-gated")
    else:
        line += "; no power gating: every tile of the chips used leaks throughout"
    if static.get("node_note"):
        line += f" ({static['node_note']})"
    return line


def validation_line(validation: dict) -> str:
    """How far the cost model was off on published silicon, leave-one-out: the trust a reader should give it."""
    def worst(error):
        return f"within {100 * error:.0f} %" if error is not None else "not validated"
    return (f"validated: chip model on {', '.join(validation['chips']) or 'no chip'} "
            f"(TOPS/W {worst(validation['max_abs_error_tops_per_w'])} leave-one-out); digital baseline on "
            f"{', '.join(validation['baseline_chips']) or 'no chip'} "
            f"({worst(validation['baseline_max_abs_error_tops_per_w'])}); aimc-compile validate for the table")


def say_accuracy(accuracy: dict, without_hwa: dict | None) -> None:
    from compiler.evaluation.accuracy import simulator_line, summary_lines
    progress.say(simulator_line(accuracy))  # results compare number for number only on the same backend and stream
    for line in summary_lines(accuracy):
        progress.say(f"accuracy: {line}")
    for line in summary_lines({**accuracy, "results": accuracy.get("results_without_pt_opt") or []}):
        progress.say(f"accuracy, PT optimization off: {line}")
    if "decoding" in accuracy:
        from compiler.evaluation.decoding import summary_lines as decoding_lines
        for line in decoding_lines(accuracy["decoding"]):
            progress.say(f"decoding: {line}")
    if without_hwa is not None:
        for line in summary_lines(without_hwa):
            progress.say(f"accuracy, without HWA fine-tuning: {line}")
