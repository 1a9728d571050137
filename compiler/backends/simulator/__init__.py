"""The noisy functional simulator: the placed graph lowered onto one programmed chip instance.

- `lowering.build_simulator`: the whole model on one programmed, drifted chip (`PlacedGraph.simulator`);
  `lowering.lower_graph` is the graph rewrite it shares with hardware-aware training.
- `block.AnalogBlock`: one weight block on its programmed segments, the analog core's MVM batched.
- `simulator_backend`: which implementation runs (native kernels or torch ops) and its random stream.
The physics itself (device, periphery, integer quantizers) lives in compiler.analog (docs/architecture.md).
"""
from compiler.analog.programming import simulator_backend
from compiler.backends.simulator.lowering import SimulatedModel, block_weight, build_simulator, lower_graph

__all__ = ["build_simulator", "lower_graph", "SimulatedModel", "block_weight", "simulator_backend"]
