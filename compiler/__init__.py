"""aimc-compile: map transformers onto analog in-memory-computing (PCM) chips, simulate, estimate cost."""
from compiler.errors import UserError
from compiler.hw_spec import HardwareSpec, load_hw_spec
from compiler.training.finetune import hwa_finetune, save_finetuned
from compiler.ir import Kind, PlacedGraph
from compiler.models import load_model
from compiler.pipeline import compile_model

__all__ = ["compile_model", "hwa_finetune", "save_finetuned", "load_hw_spec", "load_model", "HardwareSpec", "PlacedGraph", "Kind", "UserError"]
