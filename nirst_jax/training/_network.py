"""A trained network loaded from a run folder, ready to reconstruct images from measurements."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._batching import padded_batches
from ..datasets import SimulationConfig
from ..models import mask_signals, normalise_mri
from ._checkpoints import Checkpoints
from ._config import TrainConfig
from ._first_stage import first_stage_batch_size
from ._run_folder import read_run_files
from ._steps import initial_state
from ._trainer import network_for, optimiser_for


class TrainedNetwork:
    """Z-Net / Y-Net inference: (ln A, MRI) → HbO (µM), Hb (µM), water (%) images.

    Arguments:
        run: a training run folder.
        which: "best" (lowest validation loss) or "last" checkpoint.
        active_fibres: use only this many evenly spaced fibres at test time (e.g. 8 of 16,
            the study's Fig. S4); the others are set to the training mean. Combined with any
            subset the network was trained on.
    """

    def __init__(self, run, which: str = "best", active_fibres: int | None = None):
        self.run = Path(run)
        if not self.run.is_dir():
            raise FileNotFoundError(f"run folder {self.run} does not exist")
        meta, self.normalisation, self.image_mask, self.signal_mask = read_run_files(self.run)
        self.meta = meta
        self.config = TrainConfig.from_dict(meta["train"])
        self.simulation = SimulationConfig.from_dict(meta["dataset"]["simulation"])
        if active_fibres is not None:
            self.signal_mask = self.signal_mask & self.simulation.measurement_setup().measurement_mask(active_fibres)
        optimiser = optimiser_for(self.config, 1)
        network = network_for(self.config, self.simulation, self.normalisation, self.signal_mask)
        graphdef, template = initial_state(network, optimiser)
        checkpoints = Checkpoints(self.run)
        state = checkpoints.restore(which, template)
        checkpoints.close()
        self.step = int(state.step)
        self.settings = {"run": str(self.run.absolute()), "checkpoint": which, "step": self.step,
                         "model": self.config.model.name, "active_fibres": active_fibres}
        from flax import nnx

        self.model = nnx.merge(graphdef, state.params, state.batch_stats)
        signal_mask = self.signal_mask
        self._predict = jax.jit(lambda s, m: self._forward(mask_signals(s, signal_mask), m))
        self._predict_prepared = None  # `from_first_stage`'s, compiled on first use

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(L, S, K) of the measurements it expects."""
        return tuple(self.normalisation.reference.shape)

    @property
    def scatter(self) -> tuple[float, float]:
        """(a mm⁻¹, b) of the training data's reference phantom: the middle of their ranges, as
        the dataset simulates its reference (fixed scatter: the value)."""
        return self.simulation.phantoms.reference_scatter

    def forward_model(self):
        """The forward model of the set-up the network was trained on (its mesh, wavelengths,
        optodes, scattering law): what measurements must be calibrated against for this network."""
        return self.simulation.forward_model()

    @property
    def image_size(self) -> int:
        return self.config.model.image_size

    def _forward(self, signals, mri, **prepared):
        output = self.model(signals, normalise_mri(mri, self.image_mask), train=False, **prepared)
        return jnp.where(self.image_mask, self.normalisation.images(output), 0.0)

    def __call__(self, ln_amplitude, mri, batch_size: int | None = None) -> np.ndarray:
        """Reconstruct.

        Arguments:
            ln_amplitude: (L, S, K) or (B, L, S, K) measured ln amplitudes, calibrated like the
                training data (same reference system).
            mri: (H, H) or (B, H, H) MRI grey levels (ignored by Z-Net without MRI, but the
                shape is still checked).
            batch_size: phantoms per compiled call (default `default_batch_size`). A batch
                runs in calls of exactly this size, the last one padded, so sets of any size
                share one compiled program; a single phantom runs alone.

        Returns:
            (3, H, H) or (B, 3, H, H) float32: HbO (µM), Hb (µM), water (%), 0 outside the disk.
        """
        ln_amplitude = np.asarray(ln_amplitude, np.float32)
        mri = np.asarray(mri, np.float32)
        single = ln_amplitude.ndim == 3
        if single:
            ln_amplitude, mri = ln_amplitude[None], mri[None]
        if ln_amplitude.ndim != 4 or ln_amplitude.shape[1:] != self.data_shape:
            raise ValueError(f"ln_amplitude must be {self.data_shape} or (B, {', '.join(map(str, self.data_shape))}), got {ln_amplitude.shape[int(single):]}")
        size = self.image_size
        if mri.shape != (len(ln_amplitude), size, size):
            raise ValueError(f"mri must be ({size}, {size}) per phantom, got {mri.shape[int(single):]}")
        active = np.broadcast_to(self.signal_mask, ln_amplitude.shape)
        if not np.isfinite(ln_amplitude[active]).all():
            raise ValueError("ln_amplitude has NaN or infinite values in measurements the network uses")
        if not np.isfinite(mri).all():
            raise ValueError("mri has NaN or infinite values")
        signals = np.asarray(self.normalisation.signals(ln_amplitude), np.float32)
        batch_size = self.default_batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        chunks = padded_batches((signals, mri), batch_size, pad_single=not single)
        out = [np.asarray(self._predict(*chunk))[:n] for n, chunk in chunks]
        images = np.concatenate(out)
        return images[0] if single else images

    @property
    def default_batch_size(self) -> int:
        """Phantoms per compiled call: 64; DRI + U-Net `first_stage_batch_size()` (a DRI run
        each); LGN 16 on CPU (64 on accelerators): per phantom as fast as 64 on a 2-core CPU
        (0.063 against 0.062 s, 8: 0.078 s; measured 2026-12-06) with less padding on small sets.
        The price of one compiled program per network: a set smaller than a batch costs a whole
        batch (e.g. 2 phantoms of DRI + U-Net run 8 DRI reconstructions on CPU)."""
        if hasattr(self.model, "prepare"):
            return first_stage_batch_size()
        if self.config.model.name == "lgn" and jax.default_backend() == "cpu":
            return 16
        return 64

    def from_first_stage(self, first_stage, mri, batch_size: int = 64) -> np.ndarray:
        """Reconstruct from the first stage's images computed elsewhere: for DRI + U-Net, DRI's
        images of the same measurements with the network's reconstruction mesh, settings and
        fibres (`GaussNewtonMethod`, as `nirst evaluate` and the study run it), so a DRI already
        run is not run again. Equals `self(ln_amplitude, mri)` to DRI's float32 rounding (the
        network's first stage is that DRI: tests/test_dri_unet.py).

        Arguments:
            first_stage: (B, 3, H, H) HbO (µM), Hb (µM), water (%).
            mri: (B, H, H) MRI grey levels.
            batch_size: phantoms per compiled call (the last one padded).

        Returns:
            (B, 3, H, H) float32 images, 0 outside the disk.
        """
        if not hasattr(self.model, "prepare"):
            raise ValueError(f"a {self.config.model.name} network has no first stage")
        first_stage, mri = np.asarray(first_stage, np.float32), np.asarray(mri, np.float32)
        size = self.image_size
        if first_stage.ndim != 4 or first_stage.shape[1:] != (3, size, size) or mri.shape != (len(first_stage), size, size):
            raise ValueError(f"first_stage must be (B, 3, {size}, {size}) and mri (B, {size}, {size}), "
                             f"got {first_stage.shape} and {mri.shape}")
        if not (np.isfinite(first_stage).all() and np.isfinite(mri).all()):
            raise ValueError("first_stage or mri has NaN or infinite values")
        if self._predict_prepared is None:
            mask = jnp.asarray(self.model.stage.value.mask, jnp.float32)
            self._predict_prepared = jax.jit(lambda images, m: self._forward(
                None, m, prepared=self.normalisation.targets(images) * mask))
        out = [np.asarray(self._predict_prepared(*chunk))[:n] for n, chunk in padded_batches((first_stage, mri), batch_size, pad_single=True)]
        return np.concatenate(out)
