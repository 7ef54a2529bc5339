"""The normalisation networks see: signals per wavelength, targets per chromophore."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np


class Normalisation(eqx.Module):
    """s = (ln A − reference − mean_λ) / std_λ and t = (c − mean_c) / std_c.

    Statistics are over the training split (targets: pixels inside the disk); the reference is
    the homogeneous phantom at the nominal background (a calibration measurement).

    Attributes:
        reference: (L, S, K) ln A of the reference phantom.
        signal_mean, signal_std: (L,).
        target_mean, target_std: (3,) HbO (µM), Hb (µM), water (%).
    """

    reference: jnp.ndarray
    signal_mean: jnp.ndarray
    signal_std: jnp.ndarray
    target_mean: jnp.ndarray
    target_std: jnp.ndarray

    def __check_init__(self):
        n = self.reference.shape[0]
        if self.reference.ndim != 3 or self.signal_mean.shape != (n,) or self.signal_std.shape != (n,):
            raise ValueError(
                f"reference must be (L, S, K) with (L,) signal mean/std; got {self.reference.shape}, "
                f"{self.signal_mean.shape}, {self.signal_std.shape}"
            )
        if self.target_mean.shape != (3,) or self.target_std.shape != (3,):
            raise ValueError("target mean/std must have 3 entries (HbO, Hb, water)")
        for name in ("signal_std", "target_std"):
            value = np.asarray(getattr(self, name))
            if not (np.isfinite(value).all() and (value > 0).all()):
                raise ValueError(f"{name} must be finite and positive, got {value}")

    @classmethod
    def from_manifest(cls, manifest: dict, reference) -> "Normalisation":
        """From a dataset manifest's `normalisation` entry and its reference ln A."""
        norm = manifest.get("normalisation") or {}
        if "signal_mean" not in norm:
            raise ValueError("the dataset has no normalisation statistics (is its training split empty?)")
        return cls(
            reference=jnp.asarray(reference, jnp.float32),
            **{k: jnp.asarray(norm[k], jnp.float32) for k in ("signal_mean", "signal_std", "target_mean", "target_std")},
        )

    def with_reference(self, reference) -> "Normalisation":
        """The same statistics with another reference ln A (a dataset from another mesh, or
        calibrated with another reference measurement): ValueError unless it is (L, S, K) as this one's."""
        reference = jnp.asarray(reference, jnp.float32)
        if reference.shape != self.reference.shape:
            raise ValueError(f"the reference must have shape {self.reference.shape}, got {reference.shape}")
        return eqx.tree_at(lambda n: n.reference, self, reference)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (inverse: `Normalisation(**arrays)`), e.g. for an npz beside a checkpoint."""
        return {name: np.asarray(getattr(self, name)) for name in ("reference", "signal_mean", "signal_std", "target_mean", "target_std")}

    def signals(self, ln_amplitude):
        """(..., L, S, K) ln A → normalised signals."""
        ln_amplitude = jnp.asarray(ln_amplitude)
        if ln_amplitude.shape[-3:] != self.reference.shape:
            raise ValueError(f"ln_amplitude must end in {self.reference.shape}, got {ln_amplitude.shape}")
        return (ln_amplitude - self.reference - self.signal_mean[:, None, None]) / self.signal_std[:, None, None]

    def ln_amplitude(self, signals):
        """Inverse of `signals`."""
        return signals * self.signal_std[:, None, None] + self.signal_mean[:, None, None] + self.reference

    def targets(self, images):
        """(..., 3, H, W) HbO (µM), Hb (µM), water (%) → normalised targets."""
        return (images - self.target_mean[:, None, None]) / self.target_std[:, None, None]

    def images(self, targets):
        """Inverse of `targets`: normalised → physical units."""
        return targets * self.target_std[:, None, None] + self.target_mean[:, None, None]
