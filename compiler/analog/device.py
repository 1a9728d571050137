"""The PCM device model (docs/analog_mvm.md, step 2), vectorized over any tensor of devices.

All conductances here are normalized, g = G / g_max in [0, 1] (one device per tensor entry; a weight is a
differential pair, so callers pass G+ and G- as two tensors or one stacked tensor). The model is the
phenomenological one of Nandakumar et al. 2019 (1M-device PCM array) as aihwkit's PCMLikeNoiseModel
implements it; every coefficient comes from `hw.device` and each effect is off where its flag is false:

- programming noise: G_prog = max(G + sigma_prog(g) N(0,1), 0), sigma_prog = c0 + c1 g + c2 g^2 in uS at
  the fit's g_max, scaled to the spec's g_max (so in normalized units sigma / g_max_fit);
- drift exponents nu ~ |N(mu_nu(g), sigma_nu(g))| with clip(slope ln g + intercept, lo, hi) statistics of
  the *target* conductance, drawn once per programmed device (aihwkit: generate_drift_coefficients);
- drift: G(t) = G_prog ((t + t0) / t0)^-nu;
- 1/f read noise accumulated up to t: G(t) += G(t) Qs(g_prog) sqrt(ln((t + t0 + t_read) / (2 t_read))) N(0,1),
  Qs = min(coeff / g_prog^exponent, max), clamped at 0 (aihwkit: apply_drift_noise_to_conductance);
- global drift compensation: `drift_compensation_factor` (see its docstring).

Random numbers come only from the torch.Generator the caller passes, so a programmed chip is a pure
function of its seed; the same code runs on CPU and CUDA (the generator must live on the tensors' device).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from compiler.errors import UserError
from compiler.hw_spec import ClippedLinear, DeviceSpec

# aihwkit clips the relative conductance before taking its log (drift statistics); a device programmed to
# zero gets the statistics of the clip value, which the spec's lo/hi clips make finite anyway.
G_LOG_FLOOR = 1e-7
# aihwkit clamps g_prog^exponent at 1e-3 in Qs so an (almost) off device does not get an infinite Qs;
# the spec's `max` clip dominates long before this.
QS_POWER_FLOOR = 1e-3


@dataclass(frozen=True)
class PCMDevice:
    """The device model of one spec; all methods take and return normalized conductances g = G / g_max."""
    spec: DeviceSpec

    def __post_init__(self) -> None:
        if self.spec.type != "PCM":  # another registered device type has a cost model, not a device model here
            raise UserError(f"device.type {self.spec.type!r}: the simulator models PCM devices only; estimate the cost "
                            f"without --simulate, or give a PCM spec")

    # --- programming ---------------------------------------------------------------------------------
    def programming_sigma(self, g_target: torch.Tensor) -> torch.Tensor:
        """Std of the programming error, normalized: (c0 + c1 g + c2 g^2) uS / g_max_fit (Nandakumar 2019)."""
        c0, c1, c2 = self.spec.programming_noise_poly_uS
        # sigma in uS scales with g_max / g_max_fit; dividing by g_max normalizes: net 1 / g_max_fit
        return (c0 + g_target * (c1 + c2 * g_target)) / self.spec.programming_noise_fit_g_max_uS

    def program(self, g_target: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """G_prog: the conductance right after program-and-verify (programming noise if enabled)."""
        if not self.spec.programming_noise:
            return g_target.clone()
        noise = torch.randn(g_target.shape, generator=generator, device=g_target.device, dtype=g_target.dtype)
        return (g_target + self.programming_sigma(g_target) * noise).clamp_(min=0.0)

    def drift_exponents(self, g_target: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """nu per device, drawn once when the device is programmed (zeros when drift is off)."""
        if not self.spec.drift:
            return torch.zeros_like(g_target)
        log_g = torch.log(g_target.clamp(min=G_LOG_FLOOR))
        mean = _clipped_linear(log_g, self.spec.drift_nu_mean)
        std = _clipped_linear(log_g, self.spec.drift_nu_std)
        noise = torch.randn(g_target.shape, generator=generator, device=g_target.device, dtype=g_target.dtype)
        return (mean + std * noise).abs_()

    # --- at inference time t -----------------------------------------------------------------------
    def drift_factor_log(self, t_inference: float) -> float:
        """ln((t + t0) / t0): G(t) = G_prog exp(-nu * this)."""
        return math.log((t_inference + self.spec.t0_s) / self.spec.t0_s)

    def read_noise_spread(self, t_inference: float) -> float:
        """sqrt(ln((t + t0 + t_read) / (2 t_read))): the 1/f noise accumulated from t_read to t + t0."""
        t_read = self.spec.t_read_s
        return math.sqrt(math.log((t_inference + self.spec.t0_s + t_read) / (2.0 * t_read)))

    def drift(self, g_prog: torch.Tensor, nu: torch.Tensor, t_inference: float) -> torch.Tensor:
        """G(t) = G_prog ((t + t0) / t0)^-nu (no change when drift is off)."""
        if not self.spec.drift:
            return g_prog.clone()
        return g_prog * torch.exp(nu * -self.drift_factor_log(t_inference))

    def read_noise_qs(self, g_prog: torch.Tensor) -> torch.Tensor:
        """Qs = min(coeff / g_prog^exponent, max) (Nandakumar et al. 2019)."""
        q = self.spec.read_noise_qs
        return (q.coeff / g_prog.pow(q.exponent).clamp_(min=QS_POWER_FLOOR)).clamp_(max=q.max)

    def add_read_noise(self, g_drifted: torch.Tensor, g_prog: torch.Tensor, t_inference: float,
                       generator: torch.Generator | None) -> torch.Tensor:
        """G(t) with the accumulated 1/f read noise at t (no change when read noise is off)."""
        if not self.spec.read_noise:
            return g_drifted
        sigma = self.read_noise_qs(g_prog).mul_(self.read_noise_spread(t_inference))
        noise = torch.randn(g_drifted.shape, generator=generator, device=g_drifted.device, dtype=g_drifted.dtype)
        return (g_drifted + g_drifted * sigma * noise).clamp_(min=0.0)

    def at_time(self, g_prog: torch.Tensor, nu: torch.Tensor, t_inference: float,
                generator: torch.Generator | None) -> torch.Tensor:
        """The conductance read at t: drift, then read noise."""
        return self.add_read_noise(self.drift(g_prog, nu, t_inference), g_prog, t_inference, generator)


def _clipped_linear(log_g: torch.Tensor, p: ClippedLinear) -> torch.Tensor:
    return (p.slope * log_g + p.intercept).clamp_(p.lo, p.hi)


def drift_compensation_factor(g_eff_prog: torch.Tensor, g_eff_t: torch.Tensor) -> torch.Tensor:
    """Global drift compensation of one array (Joshi et al., Nat. Commun. 2020; aihwkit GlobalDriftCompensation).

    Right after programming and again at t, the array is read with a fixed known input (all ones on its
    rows); the ratio of the summed |outputs| rescales its digital outputs at t. `g_eff_*` are (..., C, R)
    effective conductances (G+ - G-) / g_max; the result has shape (...), one factor per array. The
    reads are taken noiselessly: the calibration averages many reads (and reads all columns at once),
    so output noise contributes nothing systematic to it.
    """
    reference = g_eff_prog.sum(dim=-1).abs().sum(dim=-1)
    drifted = g_eff_t.sum(dim=-1).abs().sum(dim=-1)
    return torch.where(drifted > 0, reference / drifted.clamp(min=1e-30), torch.ones_like(reference))
