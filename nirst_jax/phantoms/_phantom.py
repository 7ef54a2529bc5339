"""An explicit phantom: a background with analytic regions layered over it."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ._coverage import Coverage, paint
from ._mri import mri_image


@dataclass(frozen=True)
class Region:
    """A region of a phantom.

    Attributes:
        shape: an analytic shape (`Circle`, `StarShape`, …) with `contains(points)`.
        chromophores: HbO (µM), Hb (µM), water (%) inside.
        grey: grey level on the MRI.
        label: a name for tables (e.g. "lesion").
    """

    shape: object
    chromophores: tuple[float, float, float]
    grey: float
    label: str = "region"

    def __post_init__(self):
        values = np.asarray(self.chromophores, float)
        if values.shape != (3,) or not np.all(np.isfinite(values)) or (values < 0).any():
            raise ValueError(f"region {self.label!r}: chromophores must be 3 finite values ≥ 0, got {self.chromophores!r}")
        object.__setattr__(self, "chromophores", tuple(values.tolist()))


@dataclass(frozen=True)
class Phantom:
    """A phantom: background values, then regions painted in order (later ones on top).

    Attributes:
        background: HbO (µM), Hb (µM), water (%) of the background.
        regions: the regions.
        background_grey: MRI grey level of the background.
        scatter: scattering amplitude a (mm⁻¹) and power b (uniform).
        radius_mm: the disk radius the phantom is drawn for.
        name: a short name.
    """

    background: tuple[float, float, float]
    regions: tuple[Region, ...]
    background_grey: float = 50.0
    scatter: tuple[float, float] = (1.0, 1.0)
    radius_mm: float = 41.0
    name: str = "phantom"

    def __post_init__(self):
        values = np.asarray(self.background, float)
        if values.shape != (3,) or not np.all(np.isfinite(values)) or (values < 0).any():
            raise ValueError(f"phantom {self.name!r}: background must be 3 finite values ≥ 0, got {self.background!r}")
        object.__setattr__(self, "regions", tuple(self.regions))
        labels = [r.label for r in self.regions]
        if len(set(labels)) != len(labels) or "background" in labels:
            raise ValueError(f"phantom {self.name!r}: region labels must be unique and not 'background', got {labels}")
        for region in self.regions:
            center = np.asarray(region.shape.center)
            if np.hypot(*center) + region.shape.extent > self.radius_mm:
                raise ValueError(f"phantom {self.name!r}: region {region.label!r} reaches outside the disk")

    def _fractions(self, coverage: Coverage):
        return jnp.stack([coverage(r.shape.contains) for r in self.regions])

    def _values(self):
        return jnp.asarray([r.chromophores for r in self.regions])

    def nodal(self, coverage: Coverage) -> np.ndarray:
        """(3, N) chromophores at the mesh nodes, from `Coverage.nodes(mesh)`."""
        return np.asarray(paint(jnp.asarray(self.background), self._fractions(coverage), self._values()))

    def images(self, coverage: Coverage, mask) -> np.ndarray:
        """(3, H, W) chromophore images (0 off `mask`), from `Coverage.pixels(grid)`."""
        images = paint(jnp.asarray(self.background), self._fractions(coverage), self._values())
        return np.asarray(jnp.where(mask, images, 0.0))

    def mri(self, coverage: Coverage, mask) -> np.ndarray:
        """(H, W) noise-free MRI image."""
        greys = [r.grey for r in self.regions]
        return np.asarray(mri_image(self._fractions(coverage), greys, self.background_grey, mask))

    def region_masks(self, coverage: Coverage, threshold: float = 0.5) -> dict[str, np.ndarray]:
        """Label → pixels mostly covered by that region and not by a later one; "background" too."""
        fractions = np.asarray(self._fractions(coverage))
        visible = fractions.copy()
        for k in range(len(fractions)):
            visible[k] *= np.prod(1 - fractions[k + 1 :], axis=0)
        masks = {r.label: visible[k] >= threshold for k, r in enumerate(self.regions)}
        masks["background"] = (1 - fractions).prod(0) >= threshold
        return masks
