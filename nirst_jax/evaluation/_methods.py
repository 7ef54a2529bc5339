"""Batched Gauss-Newton reconstruction with the interface of a trained network.

A reconstruction method here is any callable mapping (B, L, S, K) ln amplitudes and
(B, H, H) MRI images to (B, 3, H, H) HbO (µM), Hb (µM), water (%) images, 0 outside the disk,
with an `image_mask` attribute: `GaussNewtonMethod` (DRI, Tikhonov),
`nirst_jax.training.TrainedNetwork` (a run of `nirst train`) and `RefinedNetwork` (a network
followed by Gauss-Newton steps centred on its output).
"""

from __future__ import annotations

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .._batching import padded_batches
from ..geometry import DiskDomain, MeasurementSetup
from ..mesh import Mesh
from ..recon import DEFAULT_WEIGHTS, GaussNewton, GaussNewtonStatus, Reconstructor, check_weight


class GaussNewtonMethod:
    """MRI-guided (DRI), Tikhonov or soft-prior Gauss-Newton on a given mesh, vmapped in batches.

    Arguments:
        mesh: the reconstruction mesh (often the training data's mesh; any mesh of the
            set-up's domain).
        setup: the measurement set-up of the data (`MeasurementSetup`: optodes, scattering
            law, image grid; continuous wave).
        wavelengths_nm: measurement wavelengths.
        method: "dri" or "tikhonov" (the soft prior needs a segmentation: `nirst reconstruct`).
        active_fibres: reconstruct from this many evenly spaced rim fibres only (default all).
        weight: regularisation weight α (default `DEFAULT_WEIGHTS[method]`).
        iterations: most Gauss-Newton steps.
        batch_size: phantoms per vmapped call.
        progress: show a progress bar.
    """

    def __init__(
        self,
        mesh: Mesh,
        setup: MeasurementSetup,
        wavelengths_nm,
        method: str = "dri",
        active_fibres: int | None = None,
        weight: float | None = None,
        iterations: int = 10,
        batch_size: int = 8,
        progress: bool = True,
    ):
        if method not in ("dri", "tikhonov"):
            raise ValueError(f"batched Gauss-Newton supports 'dri' and 'tikhonov', got {method!r}")
        if setup.frequency_hz != 0:
            raise ValueError("batched Gauss-Newton reconstructs continuous-wave ln A; "
                             f"the set-up is modulated at {setup.frequency_hz:g} Hz (use nirst reconstruct)")
        self.model = setup.forward_model(mesh, wavelengths_nm, active_fibres=active_fibres)
        self.image_size = setup.image_size
        self.reconstructor = Reconstructor.create(
            self.model,
            mesh,
            method,
            grid=setup.grid(),
            solver=GaussNewton(iterations=iterations),
            scatter=setup.scatter,
        )
        self.weight = DEFAULT_WEIGHTS[method] if weight is None else float(weight)
        check_weight(self.weight)
        self.method, self.batch_size, self.progress = method, int(batch_size), progress
        self.settings = {
            "method": method,
            "mesh_sha256": mesh.content_hash,
            "image_size": self.image_size,
            "wavelengths_nm": [float(w) for w in wavelengths_nm],
            "n_fibres": setup.optodes.count if setup.is_ring else None,
            "active_fibres": active_fibres,
            "scatter": list(setup.scatter),
            "weight": self.weight,
            "iterations": int(iterations),
            "factor_in_float32": self.reconstructor.solver.factor_in_float32,
        }
        """Everything that determines the images (JSON-ready): what a cache of them is keyed by."""
        if not (isinstance(setup.domain, DiskDomain) and setup.is_ring and setup.optodes.angle_offset_deg == 0):
            self.settings["setup"] = setup.to_dict()  # the study's disk keeps its keys (and caches)

    @classmethod
    def for_dataset(cls, dataset, method: str = "dri", scatter=None, **options) -> "GaussNewtonMethod":
        """On the dataset's own mesh, wavelengths, optodes and scattering law (refused when the
        dataset draws it per phantom, unless `scatter` (a, b) is given)."""
        config = dataset.config
        if scatter is None:
            scatter = config.phantoms.known_scatter(f"{method.upper()} reconstruction")
        setup = dataclasses.replace(config.measurement_setup(), scatter=tuple(scatter))
        return cls(dataset.mesh, setup, config.wavelengths_nm, method, **options)

    @property
    def image_mask(self) -> np.ndarray:
        """(H, W) pixels inside the reconstruction mesh."""
        return np.asarray(self.reconstructor.grid.mask)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(L, S, K) of the ln A it reconstructs."""
        return tuple(self.model.data_shape)

    def __call__(self, ln_amplitude, mri, start=None) -> np.ndarray:
        """(B, 3, H, H) images from (B, L, S, K) ln A and (B, H, H) MRI (calibrated data).

        With `start` (B, 3, H, H) images (µM, µM, %), each is refined instead: the Gauss-Newton
        steps correct it with the prior centred on it (`Reconstructor`'s `start`).
        """
        ln_amplitude, mri = np.asarray(ln_amplitude, float), np.asarray(mri, float)
        if ln_amplitude.ndim != 4 or ln_amplitude.shape[1:] != self.model.data_shape:
            raise ValueError(f"ln_amplitude must be (B, {', '.join(map(str, self.model.data_shape))}), got {ln_amplitude.shape}")
        size = self.image_size
        if mri.shape != (len(ln_amplitude), size, size):
            raise ValueError(f"mri must be (B, {size}, {size}), got {mri.shape}")
        arrays, what = (ln_amplitude, mri), self.method.upper()
        if start is not None:
            start = np.asarray(start, float)
            if start.shape != (len(ln_amplitude), 3, size, size):
                raise ValueError(f"start must be (B, 3, {size}, {size}), got {start.shape}")
            if not np.isfinite(start).all():
                raise ValueError("start images have NaN or infinite values")
            arrays, what = (*arrays, start), f"{what} refinements"
        out, status = [], []
        bar = tqdm(total=len(ln_amplitude), desc=f"{what} reconstructions", unit="phantom",
                   disable=not self.progress, leave=False)
        weight = jnp.asarray(self.weight, jnp.result_type(float))  # not weakly typed: DRIStage's program too
        for n, chunk in padded_batches(arrays, self.batch_size, pad_single=True):
            images, codes = reconstruct_batch(self.reconstructor, weight, *(jnp.asarray(a) for a in chunk))
            out.append(np.asarray(images)[:n])
            status.append(np.asarray(codes)[:n])
            bar.update(n)
        bar.close()
        warn_failures(np.concatenate(status), what)
        return np.concatenate(out).astype(np.float32)


@eqx.filter_jit
def reconstruct_batch(reconstructor: Reconstructor, weight, ln_amplitude, mri, start=None):
    """(images, status) of a batch, compiled once per reconstructor structure and batch shape
    (the reconstructor is an argument, not a closure: methods on the same set-up share it).

    Arguments:
        reconstructor: a `Reconstructor` ("dri" reads the MRI; "tikhonov" ignores it).
        weight: α as a strongly typed array (`jnp.asarray(α, jnp.result_type(float))`): a
            Python float would be static (one program per value), and `jnp.asarray(α)` is
            weakly typed, which the jit cache keys on; either compiles another program for the
            same batch shape.
        ln_amplitude: (B, L, S, K) calibrated ln A.
        mri: (B, H, W).
        start: (B, 3, H, W) images to refine, or None.

    Returns:
        (B, 3, H, W) images, (B,) `GaussNewtonStatus` codes. Traceable (inside `jit`).
    """

    def one(data, image, first):
        result = reconstructor(data, image if reconstructor.method == "dri" else None, weight, start=first)
        return result.images, result.status

    return jax.vmap(one)(ln_amplitude, mri, start)


def warn_failures(status, what: str) -> None:
    """A RuntimeWarning naming the phantoms whose Gauss-Newton run failed (`GaussNewtonStatus`)."""
    failed = np.flatnonzero(np.asarray(status) >= GaussNewtonStatus.NOT_FINITE)
    if len(failed):
        reasons = sorted({GaussNewtonStatus(int(status[i])).describe() for i in failed})
        warnings.warn(
            f"{what}: {len(failed)} of {len(status)} phantoms (positions {failed[:10].tolist()}"
            f"{', …' if len(failed) > 10 else ''}) {'; '.join(reasons)}; their images are the last accepted iterate (the starting guess if none)",
            RuntimeWarning,
            stacklevel=3,
        )


class Recalibrated:
    """A method run on data calibrated for another mesh: each ln A is moved from the data's
    reference system to the method's (ln A − `data_reference` + `method_reference`), as a
    reference-calibrated measurement would be for the method's own mesh.

    Arguments:
        method: e.g. a `GaussNewtonMethod` on a finer mesh than the data's calibration, or a
            `TrainedNetwork` trained on data from another mesh (anything with `data_shape`).
        data_reference: (L, S, K) ln A of the homogeneous reference in the data's system.
        method_reference: (L, S, K) the same phantom simulated on the method's mesh.

    The result has the method interface: `(ln_amplitude, mri)` → images, `image_mask`, `settings`.
    """

    def __init__(self, method, data_reference, method_reference):
        self.method = method
        data_reference, method_reference = np.asarray(data_reference, float), np.asarray(method_reference, float)
        shape = tuple(method.data_shape)
        if data_reference.shape != shape or method_reference.shape != shape:
            raise ValueError(f"references must be {shape}, got {data_reference.shape} and {method_reference.shape}")
        self.shift = method_reference - data_reference
        if not np.isfinite(self.shift).all():
            raise ValueError("references have NaN or infinite values")
        self.settings = {**method.settings, "recalibrated": True}

    @property
    def image_mask(self) -> np.ndarray:
        return self.method.image_mask

    def __call__(self, ln_amplitude, mri) -> np.ndarray:
        return self.method(np.asarray(ln_amplitude, float) + self.shift, mri)


class RefinedNetwork:
    """A network's images refined by Gauss-Newton steps that make them explain the data.

    Arguments:
        network: the first stage, e.g. `TrainedNetwork` (any method of this module).
        refinement: a `GaussNewtonMethod` (DRI: the prior then follows the MRI as well as the
            network's output) whose `iterations` are the refinement steps; its data
            calibration must be the network's (e.g. both on the training data's mesh).

    The result has the method interface: `(ln_amplitude, mri)` → images, `image_mask`.
    """

    def __init__(self, network, refinement: GaussNewtonMethod):
        if refinement.image_size != np.shape(network.image_mask)[0]:
            raise ValueError(f"the network gives {np.shape(network.image_mask)} images, the refinement {refinement.image_size}²")
        self.network, self.refinement = network, refinement

    @property
    def image_mask(self) -> np.ndarray:
        return np.asarray(self.network.image_mask) & self.refinement.image_mask

    def __call__(self, ln_amplitude, mri) -> np.ndarray:
        """(B, 3, H, H) refined images from (B, L, S, K) ln A and (B, H, H) MRI."""
        start = self.network(ln_amplitude, mri)
        return self.refinement(ln_amplitude, mri, start=start)
