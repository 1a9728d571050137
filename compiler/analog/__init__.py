"""The analog core: the chip's physics, in one place, for simulation, range search and training.

- `device.PCMDevice`: programming noise, drift, 1/f read noise; `drift_compensation_factor`.
- `programming`: weights to conductances (per-segment or per-column ranges, differential pairs) and
  programming them (torch; or the fused C kernel of `native`/kernels.c, whose parameters come from here).
- `periphery`: DAC, ADC, output noise and IR drop, each exact (simulation) or straight-through (training).
- `integer`: the digital unit's integer quantizers (attention).
- `tile.analog_mvm`: the reference MVM of one programmed segment.
docs/analog_mvm.md states the model; docs/architecture.md who uses it.
"""
