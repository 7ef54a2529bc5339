"""One reproduction of the study in a folder: datasets, DRI, trained networks, cached
reconstructions. Every stage is resumable: what is already on disk is reused.

Layout of the folder::

    study.json                  the scale (a different scale in the same folder is refused)
    data/                       the main dataset store (nirst simulate)
    data-realistic/             the `realistic` distribution (training data of "Z-Net realistic")
    data-mismatch/, data-fine-mesh/   extra test sets (MRI shape mismatch; a finer mesh)
    runs/<network>/             training runs (nirst train)
    reconstructions/<set>/<method>.npy   images of each method on each test set
    <experiment>/               figures, tables and a result.json per experiment
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, save_json
from ..datasets import Dataset, SimulationConfig, simulate_dataset
from ..evaluation import GaussNewtonMethod, RefinedNetwork
from ..models import ModelSpec
from ..phantoms import MRIConfig, PhantomConfig, phantom_config
from ..training import TrainConfig, TrainedNetwork, train
from ._fixed_data import simulate_fixed_phantoms
from ._scale import Scale

@dataclass(frozen=True)
class Recipe:
    """How a network of the study is trained.

    Attributes:
        model: "znet", "ynet" or "znet-nomri".
        hybrid: the trained "Z-Net" fine-tuned with the physics-consistency loss
            (`Scale.physics_weight`, `physics_epochs`, `physics_learning_rate`).
        fibre_dropout: with fibre dropout (`Scale.fibre_dropout`).
        data: "data" (the study's distribution) or "data-realistic" (`realistic`).
    """

    model: str
    hybrid: bool = False
    fibre_dropout: bool = False
    data: str = "data"


NETWORKS = {
    "Z-Net": Recipe("znet"),
    "Y-Net": Recipe("ynet"),
    "Z-Net hybrid": Recipe("znet", hybrid=True),
    "Z-Net no MRI": Recipe("znet-nomri"),
    "Z-Net fibre dropout": Recipe("znet", fibre_dropout=True),
    "Z-Net realistic": Recipe("znet", data="data-realistic"),
}
"""Network name → how it is trained."""
METHODS = ("DRI", *NETWORKS)
REFINED = " + refine"
"""Suffix of a network's refined rows: its images after `Scale.refine_steps` DRI steps centred on them."""
FIXED_PHANTOM_NAMES = ("three-inclusions", "malignant", "benign")
"""The fixed phantoms of the experiments, in this order."""
MISMATCH_MM = 2.0
"""MRI/optical shape mismatch of the robustness test set (radius and centre, up to ±2 mm)."""


def _folder_name(name: str) -> str:
    return name.lower().replace(" + ", "-").replace(" ", "-")


@dataclass
class TestSet:
    """Phantoms to reconstruct, with their truth.

    Attributes:
        name: the set's name ("test", "mismatch", "fine-mesh", "fixed").
        ids: (B,) phantom ids (dataset indices).
        ln_amplitude: (B, L, S, K), calibrated to the training data's reference system.
        mri: (B, H, H).
        truth: (B, 3, H, H).
        mask: (H, W).
    """

    name: str
    ids: np.ndarray
    ln_amplitude: np.ndarray
    mri: np.ndarray
    truth: np.ndarray
    mask: np.ndarray


class Study:
    """A reproduction of the study at a given scale, in `folder`.

    Arguments:
        folder: the output folder (created; reused when it holds the same scale).
        scale: the `Scale`.
        progress: show progress bars.
    """

    def __init__(self, folder, scale: Scale, progress: bool = True):
        self.folder, self.scale, self.progress = Path(folder), scale, progress
        stamp = self.folder / "study.json"
        if stamp.exists():
            stored = json.loads(stamp.read_text())
            if Scale.from_dict(stored) != scale:  # settings added since the folder was made take their defaults
                raise ValueError(
                    f"{self.folder} holds a study at scale {stored.get('name')!r} with other settings; "
                    f"use another --out folder"
                )
        else:
            save_json(stamp, scale.to_dict())
        self._methods: dict = {}
        self._test_sets: dict[str, TestSet] = {}

    # ---- data ----------------------------------------------------------------------------

    def _simulation(self, phantoms: PhantomConfig = PhantomConfig(), spacing: float | None = None) -> SimulationConfig:
        s = self.scale
        return SimulationConfig(phantoms=phantoms, mesh_spacing_mm=spacing or s.mesh_spacing_mm, image_size=s.image_size)

    def _store(self, name: str, config: SimulationConfig, count: int, seed: int) -> Dataset:
        folder = self.folder / name
        manifest = folder / "manifest.json"
        if not (manifest.exists() and json.loads(manifest.read_text()).get("status") == "complete"):
            simulate_dataset(folder, config, count, seed, config_name=f"{self.scale.name}-{name}",
                             resume=folder.exists(), progress=self.progress)
        return Dataset(folder)

    @cached_property
    def dataset(self) -> Dataset:
        """The main dataset (the study's distribution), simulated on first use."""
        return self._store("data", self._simulation(), self.scale.count, self.scale.seed)

    @cached_property
    def realistic_dataset(self) -> Dataset:
        """The `realistic` distribution (MRI and optics decoupled), same size as the main one."""
        return self._store("data-realistic", self._simulation(phantom_config("realistic")), self.scale.count, self.scale.seed + 3)

    def training_data(self, network: str) -> Dataset:
        """The store `network` trains on."""
        return self.realistic_dataset if NETWORKS[network].data == "data-realistic" else self.dataset

    def extra_dataset(self, name: str) -> Dataset:
        """"mismatch" (MRI shapes off by up to 2 mm), "fine-mesh" (data from a finer mesh) or
        "realistic" (the test split's store of the `realistic` distribution)."""
        if name == "realistic":
            return self.realistic_dataset
        if name == "mismatch":
            config = self._simulation(PhantomConfig(mri=MRIConfig(mismatch_mm=MISMATCH_MM)))
            return self._store("data-mismatch", config, self.scale.external_count, self.scale.seed + 1)
        if name == "fine-mesh":
            config = self._simulation(spacing=self.scale.fine_mesh_spacing_mm)
            return self._store("data-fine-mesh", config, self.scale.external_count, self.scale.seed + 2)
        raise ValueError(f"unknown extra test set {name!r}; choose 'mismatch', 'fine-mesh' or 'realistic'")

    def test_set(self, name: str = "test") -> TestSet:
        """The main test split ("test", first `test_count`) or a whole extra set, calibrated.

        Extra sets are calibrated like measured data: ln A − their own homogeneous reference
        + the training reference (removes the mesh's systematic offset, not its shape errors).
        Each set is read once per study.
        """
        if name not in self._test_sets:
            self._test_sets[name] = self._read_test_set(name)
        return self._test_sets[name]

    def _read_test_set(self, name: str) -> TestSet:
        if name in ("test", "realistic"):  # test splits: the realistic store shares the main one's reference
            data = self.dataset if name == "test" else self.realistic_dataset
            ids = data.indices("test")[: self.scale.test_count]
            ln_amplitude = data.read("ln_amplitude", ids).astype(float) - data.reference + self.dataset.reference
        else:
            data = self.extra_dataset(name)
            ids = np.arange(data.count)
            ln_amplitude = data.read("ln_amplitude", ids) - data.reference + self.dataset.reference
        return TestSet(name, ids, ln_amplitude, data.read("mri", ids), data.read("targets", ids), data.image_mask)

    @cached_property
    def fixed(self) -> tuple[TestSet, list]:
        """The fixed phantoms of `FIXED_PHANTOM_NAMES` simulated on the main dataset's mesh and
        settings (simulated once per study): (`TestSet` named "fixed", their `Phantom`s)."""
        data = simulate_fixed_phantoms(FIXED_PHANTOM_NAMES, self.dataset.config, self.dataset.mesh, seed=self.scale.seed)
        ids = np.arange(len(FIXED_PHANTOM_NAMES))
        return TestSet("fixed", ids, data["ln_amplitude"], data["mri"], data["targets"], data["mask"]), data["phantoms"]

    # ---- methods -------------------------------------------------------------------------

    def run_folder(self, network: str) -> Path:
        return self.folder / "runs" / _folder_name(network)

    def trained(self, network: str) -> Path:
        """Train `network` (a key of `NETWORKS`) unless done; returns its run folder."""
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; choose from {list(NETWORKS)}")
        recipe = NETWORKS[network]
        s, dataset = self.scale, self.training_data(network)
        config = TrainConfig(
            model=ModelSpec(recipe.model, wavelengths=len(dataset.config.wavelengths_nm), image_size=s.image_size, width=s.width),
            epochs=s.epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            schedule=s.schedule,
            fibre_dropout=s.fibre_dropout if recipe.fibre_dropout else 0.0,
            seed=s.seed,
        )
        if recipe.hybrid:
            config = config.replace(
                init_from=str(self.trained("Z-Net").absolute()),
                epochs=s.physics_epochs,
                learning_rate=s.physics_learning_rate,
                physics_weight=s.physics_weight,
                physics_mesh_spacing_mm=s.physics_mesh_spacing_mm,
            )
        folder = self.run_folder(network)
        done = folder / "done.json"
        if not done.exists():
            trainer = train(dataset, folder, config, resume=folder.exists(), progress=self.progress)
            seconds = sum(r["seconds"] for r in trainer.records)
            trainer.checkpoints.close()
            save_json(done, {"epochs": config.epochs, "seconds": seconds})
        return folder

    def method(self, name: str, active_fibres: int | None = None):
        """A reconstruction method: "DRI", a network name, or a network name + `REFINED`;
        optionally with fewer fibres.

        Methods are kept, so each compiles once per study.
        """
        key = (name, active_fibres)
        if key not in self._methods:
            if name == "DRI":
                method = GaussNewtonMethod.for_dataset(self.dataset, "dri", active_fibres=active_fibres, progress=self.progress)
            elif name.endswith(REFINED):
                key_refinement = (REFINED, active_fibres)  # one compiled refinement for every network
                if key_refinement not in self._methods:
                    self._methods[key_refinement] = GaussNewtonMethod.for_dataset(
                        self.dataset, "dri", active_fibres=active_fibres, iterations=self.scale.refine_steps,
                        progress=self.progress,
                    )
                method = RefinedNetwork(self.method(name.removesuffix(REFINED), active_fibres), self._methods[key_refinement])
            else:
                method = TrainedNetwork(self.trained(name), "best", active_fibres)
            self._methods[key] = method
        return self._methods[key]

    def reconstruct(self, test: TestSet, name: str, active_fibres: int | None = None) -> np.ndarray:
        """(B, 3, H, H) images of method `name` on `test` (cached on disk)."""
        tag = test.name + ("" if active_fibres is None else f"-{active_fibres}-fibres")
        path = self.folder / "reconstructions" / tag / f"{_folder_name(name)}.npy"
        if path.exists():
            images = np.load(path)
            if images.shape == test.truth.shape:
                return images
        images = np.asarray(self.method(name, active_fibres)(test.ln_amplitude, test.mri), np.float32)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, images)
        return images

    def training_seconds(self, network: str) -> float:
        """Wall time of the training epochs of `network` (after it was trained)."""
        return float(json.loads((self.trained(network) / "done.json").read_text())["seconds"])
