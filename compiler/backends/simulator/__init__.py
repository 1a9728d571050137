"""The noisy functional simulator: PCM tiles, DAC/ADC, INT6 attention, drift (docs/analog_mvm.md).

- `pcm.PCMDevice`: the device model of DESIGN.md (programming noise, drift, read noise, compensation).
- `tile`: one segment, the reference analog MVM (`program_segment`, `analog_mvm`), used by the range passes.
- `lowering.build_simulator`: the whole model on one programmed chip instance (`PlacedGraph.simulator`).
"""
from compiler.analog.device import PCMDevice, differential_targets, drift_compensation_factor
from compiler.backends.simulator.lowering import SimulatedModel, block_weight, build_simulator
from compiler.analog.tile import (DEFAULT_ADC_RANGE, ProgrammedSegment, adc, analog_mvm, column_w_max,
                                              dac, ideal_segment, program_segment)

__all__ = ["build_simulator", "SimulatedModel", "block_weight", "PCMDevice", "differential_targets",
           "drift_compensation_factor", "DEFAULT_ADC_RANGE", "ProgrammedSegment", "adc", "analog_mvm", "column_w_max",
           "dac", "ideal_segment", "program_segment"]
