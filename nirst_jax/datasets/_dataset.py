"""Reading a dataset store (see `_store.py` for the layout)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .._fingerprint import json_sha256
from ..mesh import Mesh
from ._simulation import SimulationConfig
from ._normalisation import Normalisation
from ._split import split_index
from ._store import read_manifest, sha256_file, shard_name


class Dataset:
    """A complete dataset store, opened for reading.

    Arguments:
        folder: the store folder.
        verify: check every file's SHA-256 against the manifest (reads the whole store once).

    Raises:
        ValueError: the folder is not a complete store, a file is missing, or (with `verify`)
            a checksum does not match.
    """

    def __init__(self, folder, verify: bool = True):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if self.manifest.get("status") != "complete":
            raise ValueError(f"{self.folder} is incomplete: resume its generation (nirst simulate --resume)")
        for name, digest in self.manifest["checksums"].items():
            path = self.folder / name
            if not path.is_file():
                raise ValueError(f"{self.folder} is corrupt: {name} is missing")
            if verify and sha256_file(path) != digest:
                raise ValueError(f"{self.folder} is corrupt: checksum of {name} does not match the manifest")
        self._shards: dict[tuple[int, str], np.ndarray] = {}

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the manifest's file checksums: identifies the store by its content, not its path."""
        return json_sha256(self.manifest["checksums"])

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.manifest["fields"])

    @cached_property
    def config(self) -> SimulationConfig:
        return SimulationConfig.from_dict(self.manifest["config"])

    @cached_property
    def mesh(self) -> Mesh:
        """The simulation mesh (checked against the manifest's hash when the store was verified)."""
        return Mesh(np.load(self.folder / "mesh" / "nodes.npy"), np.load(self.folder / "mesh" / "elements.npy"))

    @cached_property
    def reference(self) -> np.ndarray:
        """(L, S, K) ln A of the homogeneous phantom at the nominal background."""
        return np.load(self.folder / "reference_ln_amplitude.npy")

    @cached_property
    def image_mask(self) -> np.ndarray:
        """(H, W) pixels inside the disk."""
        return np.load(self.folder / "image_mask.npy")

    @cached_property
    def split_labels(self) -> np.ndarray:
        """(count,) 0 train, 1 validation, 2 test."""
        return np.load(self.folder / "split.npy")

    def indices(self, split: str) -> np.ndarray:
        """Sorted phantom indices of "train", "validation" or "test"."""
        return np.flatnonzero(self.split_labels == split_index(split))

    def _shard(self, shard: int, field: str) -> np.ndarray:
        key = (shard, field)
        if key not in self._shards:
            path = self.folder / "shards" / shard_name(shard) / f"{field}.npy"
            self._shards[key] = np.load(path, mmap_mode="r")
        return self._shards[key]

    def read(self, field: str, indices) -> np.ndarray:
        """Values of one stored field for the given phantoms, in the given order.

        Arguments:
            field: a stored field (see `fields`).
            indices: phantom indices.

        Returns:
            (len(indices), *field shape).
        """
        if field not in self.manifest["fields"]:
            raise ValueError(f"unknown field {field!r}; the store has {list(self.fields)}")
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.count):
            raise ValueError(f"phantom indices must be in [0, {self.count}), got {indices.min()}..{indices.max()}")
        spec = self.manifest["fields"][field]
        out = np.empty((len(indices), *spec["shape"]), spec["dtype"])
        size = self.manifest["shard_size"]
        shards = indices // size
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            out[where] = self._shard(int(shard), field)[indices[where] - shard * size]
        return out

    @cached_property
    def normalisation(self) -> Normalisation:
        """Signal and target normalisation from the training split (see `Normalisation`)."""
        return Normalisation.from_manifest(self.manifest, self.reference)

    def signals(self, indices, normalisation: Normalisation | None = None) -> np.ndarray:
        """(B, L, S, K) float32 normalised ln A: (ln A − reference − mean_λ) / std_λ.

        The reference is the homogeneous phantom at the nominal background (a calibration
        measurement), mean and std per wavelength come from the training split (or from
        `normalisation`, e.g. a pre-trained network's, with this store's reference).
        """
        raw = self.read("ln_amplitude", indices).astype(np.float32)
        return np.asarray((self.normalisation if normalisation is None else normalisation).signals(raw), np.float32)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """All stored fields of one phantom."""
        return {field: self.read(field, [index])[0] for field in self.fields}
