"""A reconstruction averaged over the symmetries of the set-up (test-time symmetry averaging).

For each symmetry T of the set-up (`nirst_jax.geometry.Symmetries`), the method reconstructs
the transformed measurement (its calibrated data permuted, its MRI transformed) and the image is
transformed back; the result is the mean of these images. An exactly equivariant method (the
physics is, up to the mesh's asymmetry) is unchanged; a network's orientation-dependent errors
average out.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Symmetries
from ..physics import MeasurementLayout

PHANTOMS_PER_CALL = 64
"""Phantoms whose G transformed copies go to the method in one call (bounds the memory)."""


class SymmetryAveraged:
    """A method's images averaged over the symmetries of the data's set-up.

    Arguments:
        method: any reconstruction method (`(ln_amplitude, mri)` → images, `image_mask`).
        symmetries: the set-up's `Symmetries` (on the method's image grid and measurement layout).
        reference: (L, S, K) ln A of the homogeneous reference in the data's calibration: the
            permutation acts on calibrated data (ln A − reference), as the set-up's symmetry does.

    The result has the method interface; each call reconstructs every phantom G times, all G
    copies of up to `PHANTOMS_PER_CALL` phantoms in one call of the method. Pixels that the transformed masks do not all cover (a polygon's rim)
    average the images that cover them; pixels outside the method's mask are 0.
    """

    def __init__(self, method, symmetries: Symmetries, reference):
        reference = np.asarray(reference, float)
        if reference.ndim != 3 or reference[0].size != symmetries.measurement_index.shape[1]:
            raise ValueError(f"reference must be (L, S, K) with S·K = {symmetries.measurement_index.shape[1]}, got {reference.shape}")
        if np.shape(method.image_mask)[0] ** 2 != symmetries.pixel_index.shape[1]:
            raise ValueError(f"the method gives {np.shape(method.image_mask)} images, the symmetries act on "
                             f"{symmetries.pixel_index.shape[1]} pixels")
        if not np.isfinite(reference).all():
            raise ValueError("reference has NaN or infinite values")
        self.method, self.symmetries, self.reference = method, symmetries, reference
        mask = np.asarray(method.image_mask, float)
        # Where the mask is not exactly symmetric (a polygon's rim), average the images that cover the pixel.
        covered = np.asarray(symmetries.images(np.repeat(mask[None], len(symmetries), 0), symmetries.inverses)).sum(0)
        self._mask, self._covered = mask, np.maximum(covered, 1.0)
        self.settings = {**getattr(method, "settings", {}), "symmetry_average": list(symmetries.names),
                         "symmetries": symmetries.fingerprint}

    @classmethod
    def for_network(cls, network) -> "SymmetryAveraged":
        """A `nirst_jax.training.TrainedNetwork` averaged over the symmetries of its training
        set-up that keep its measurements (its active fibres), on data in its calibration.

        Raises:
            ValueError: the set-up has no symmetry besides the identity.
        """
        setup = network.simulation.measurement_setup()
        layout = MeasurementLayout(detector_index=np.asarray(setup.layout().detector_index),
                                   active=np.asarray(network.signal_mask, bool))
        return cls(network, Symmetries.nontrivial(setup, layout, "symmetry averaging of the network"),
                   network.normalisation.reference)

    @property
    def image_mask(self) -> np.ndarray:
        return self.method.image_mask

    def __call__(self, ln_amplitude, mri) -> np.ndarray:
        """(B, 3, H, W) mean images from (B, L, S, K) ln A and (B, H, W) MRI (one phantom:
        (3, H, W) from (L, S, K) and (H, W))."""
        ln_amplitude, mri = np.asarray(ln_amplitude, float), np.asarray(mri)
        if ln_amplitude.ndim == 3:
            return self(ln_amplitude[None], mri[None])[0]
        if len(ln_amplitude) > PHANTOMS_PER_CALL:
            return np.concatenate([self(ln_amplitude[i : i + PHANTOMS_PER_CALL], mri[i : i + PHANTOMS_PER_CALL])
                                   for i in range(0, len(ln_amplitude), PHANTOMS_PER_CALL)])
        symmetries, count = self.symmetries, len(ln_amplitude)
        # Every symmetry of every phantom in one call of the method: G·B rows, symmetry-major.
        which = np.repeat(np.arange(len(symmetries)), count)
        calibrated = np.tile(ln_amplitude - self.reference, (len(symmetries), 1, 1, 1))
        data = np.asarray(symmetries.signals(calibrated, which)) + self.reference
        images = np.asarray(self.method(data, np.asarray(symmetries.images(np.tile(mri, (len(symmetries), 1, 1)), which))))
        back = np.asarray(symmetries.images(images, np.asarray(symmetries.inverses)[which]))
        return back.reshape(len(symmetries), count, *back.shape[1:]).sum(0) / self._covered * self._mask
