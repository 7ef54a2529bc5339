"""One reproduction of the study in a folder: datasets, DRI, trained networks, cached
reconstructions. Every stage is resumable: what is already on disk is reused.

Layout of the folder::

    study.json                  the scale (a different scale in the same folder is refused)
    data/                       the main dataset store (nirst simulate)
    data-realistic/             the `realistic` distribution (training data of "Z-Net realistic")
    data-mismatch/, data-fine-mesh/   extra test sets (MRI shape mismatch; a finer mesh); the
                                shape families are simulated in memory (seconds)
    runs/<network>/             training runs (nirst train)
    reconstructions/<set>/<method>.npy   images of each method on each test set, with
        <method>.json           what produced them (test set, method settings, checkpoint)
    <experiment>/               figures, tables and a result.json per experiment

Every cache is keyed by what produced it: a cached reconstruction is reused only while its
test set's stores, the method's settings and (for a network) its checkpoint's bytes are the
same; an experiment's result.json only while every reconstruction it read is (`inputs`).
"""

from __future__ import annotations

import dataclasses

import json
import shutil
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, save_json
from .._fingerprint import json_sha256
from .._version import __version__
from ..datasets import Dataset, SimulationConfig, simulate_dataset
from ..evaluation import GaussNewtonMethod, Recalibrated, RefinedNetwork, SymmetryAveraged
from ..geometry import Symmetries
from ..models import ModelSpec
from ..phantoms import MRIConfig, PhantomConfig, phantom_config, shape_family
from ..training import Checkpoints, TrainConfig, TrainedNetwork, Trainer
from ._fixed_data import simulate_fixed_phantoms, simulate_phantoms
from ._scale import Scale

@dataclass(frozen=True)
class Recipe:
    """How a network of the study is trained.

    Attributes:
        model: "znet", "ynet", "znet-nomri", "lgn" (the learned Gauss-Newton network, sized by
            the scale's `lgn_*` settings) or "dri-unet" (DRI + U-Net, on the scale's
            `dri_unet_*` phantoms).
        hybrid: "Z-Net"'s training run with the physics-consistency loss in its last
            `Scale.physics_epochs` epochs (weight `Scale.physics_weight`): its epochs before
            are Z-Net's.
        fibre_dropout: with fibre dropout (`Scale.fibre_dropout`).
        data: "data" (the study's distribution), "data-realistic" (`realistic`) or "data-learned"
            (the study's distribution on `Scale.learned_data_mesh_spacing_mm`, reconstructed on
            the main mesh; the main dataset where the scale has none).
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
    "LGN": Recipe("lgn", data="data-learned"),
    "DRI + U-Net": Recipe("dri-unet", data="data-learned"),
}
"""Network name → how it is trained."""
SYMMETRISED = " symmetrised"
"""Suffix of a network's images averaged over the set-up's 8 symmetries (`SymmetryAveraged`)."""
_AFTER_LGN = tuple(NETWORKS).index("LGN") + 1
METHODS = ("DRI", *tuple(NETWORKS)[:_AFTER_LGN], "LGN" + SYMMETRISED, *tuple(NETWORKS)[_AFTER_LGN:])
"""Every method of the study's tables: DRI, the networks, and LGN symmetrised beside LGN."""
FINE_DRI = "DRI fine mesh"
"""DRI on `Scale.dri_mesh_spacing_mm` (finer than the training mesh), the data recalibrated to
that mesh: DRI at its best where the data come from a finer mesh still (rows of the fine-mesh
and shape-family experiments)."""
REFINED = " + refine"
"""Suffix of a network's refined rows: its images after `Scale.refine_steps` DRI steps centred on them."""
FIXED_PHANTOM_NAMES = ("three-inclusions", "malignant", "benign")
"""The fixed phantoms of the experiments, in this order."""
SHAPES = "shapes-"
"""Prefix of the shape-family test sets: "shapes-ellipses", … (`nirst_jax.phantoms.SHAPE_FAMILIES`)."""
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
        identity: what the set is made of (`Study.test_identity`).
    """

    name: str
    ids: np.ndarray
    ln_amplitude: np.ndarray
    mri: np.ndarray
    truth: np.ndarray
    mask: np.ndarray
    identity: dict = field(default_factory=dict)


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
            try:
                same = Scale.from_dict(stored) == scale  # settings added since the folder was made take their defaults
            except ValueError:  # …and those defaults may not fit its other settings
                same = False
            if not same:
                raise ValueError(
                    f"{self.folder} holds a study at scale {stored.get('name')!r} with other settings; "
                    f"use another --out folder"
                )
        else:
            save_json(stamp, scale.to_dict())
        self._methods: dict = {}
        self._test_sets: dict[str, TestSet] = {}
        self._checkpoints: dict[str, str] = {}
        self.inputs: dict[str, dict] = {}
        """Reconstruction cache path → test set, method, fibres and key of every reconstruction
        handed out (`run_experiment` records them in the experiment's result.json)."""

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

    @cached_property
    def learned_dataset(self) -> Dataset:
        """The main dataset's phantoms (same seed, noise and split) simulated on
        `Scale.learned_data_mesh_spacing_mm`: the learned methods' training data."""
        spacing = self.scale.learned_data_mesh_spacing_mm
        if spacing is None:
            raise ValueError(f"scale {self.scale.name!r} has no learned_data_mesh_spacing_mm")
        return self._store("data-learned", self._simulation(spacing=spacing), self.scale.count, self.scale.seed)

    def training_data(self, network: str) -> Dataset:
        """The store `network` trains on."""
        data = NETWORKS[network].data
        if data == "data-realistic":
            return self.realistic_dataset
        if data == "data-learned" and self.scale.learned_data_mesh_spacing_mm is not None:
            return self.learned_dataset
        return self.dataset

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
        """The main test split ("test", first `test_count`), a whole extra set, or a shape family
        ("shapes-" + a name of `SHAPE_FAMILIES`, `Scale.family_count` phantoms on the fine mesh),
        calibrated.

        Extra sets are calibrated like measured data: ln A − their own homogeneous reference
        + the training reference (removes the mesh's systematic offset, not its shape errors).
        Each set is read once per study.
        """
        if name not in self._test_sets:
            self._test_sets[name] = self._read_test_set(name)
        return self._test_sets[name]

    def _read_test_set(self, name: str) -> TestSet:
        if name.startswith(SHAPES):
            return self._shape_set(name)
        if name in ("test", "realistic"):  # test splits: the realistic store shares the main one's reference
            data = self.dataset if name == "test" else self.realistic_dataset
            ids = data.indices("test")[: self.scale.test_count]
            ln_amplitude = data.read("ln_amplitude", ids).astype(float) - data.reference + self.dataset.reference
        else:
            data = self.extra_dataset(name)
            ids = np.arange(data.count)
            ln_amplitude = data.read("ln_amplitude", ids) - data.reference + self.dataset.reference
        return TestSet(name, ids, ln_amplitude, data.read("mri", ids), data.read("targets", ids), data.image_mask,
                       self.test_identity(name))

    def _shape_set(self, name: str) -> TestSet:
        """A shape family (`SHAPE_FAMILIES`) simulated on the fine mesh, calibrated like measurements."""
        family, s = name.removeprefix(SHAPES), self.scale
        config = self._simulation(spacing=s.fine_mesh_spacing_mm)
        mesh = config.mesh()
        phantoms = shape_family(family, s.family_count, s.seed + 4, config.phantoms)
        data = simulate_phantoms(phantoms, config, mesh, seed=s.seed + 4, purpose=f"shape-family-{family}")
        ln_amplitude = data["ln_amplitude"] - config.reference_ln_amplitude(mesh) + self.dataset.reference
        return TestSet(name, np.arange(len(phantoms)), ln_amplitude, data["mri"], data["targets"], data["mask"],
                       self.test_identity(name))

    def test_identity(self, name: str) -> dict:
        """What test set `name` ("test", "realistic", "mismatch", "fine-mesh", "fixed", a shape family) is made of:
        the content fingerprints of its store and of the training reference it is calibrated to."""
        reference = self.dataset.fingerprint
        if name == "test":
            return {"set": name, "data": reference, "count": self.scale.test_count}
        if name == "realistic":
            return {"set": name, "data": self.realistic_dataset.fingerprint, "reference": reference,
                    "count": self.scale.test_count}
        if name.startswith(SHAPES):
            s = self.scale
            return {"set": name, "count": s.family_count, "seed": s.seed + 4, "mesh_spacing_mm": s.fine_mesh_spacing_mm,
                    "reference": reference}
        if name == "fixed":
            return {"set": name, "data": reference, "phantoms": list(FIXED_PHANTOM_NAMES), "seed": self.scale.seed}
        return {"set": name, "data": self.extra_dataset(name).fingerprint, "reference": reference}

    @cached_property
    def fixed(self) -> tuple[TestSet, list]:
        """The fixed phantoms of `FIXED_PHANTOM_NAMES` simulated on the main dataset's mesh and
        settings (simulated once per study): (`TestSet` named "fixed", their `Phantom`s)."""
        data = simulate_fixed_phantoms(FIXED_PHANTOM_NAMES, self.dataset.config, self.dataset.mesh, seed=self.scale.seed)
        ids = np.arange(len(FIXED_PHANTOM_NAMES))
        test = TestSet("fixed", ids, data["ln_amplitude"], data["mri"], data["targets"], data["mask"], self.test_identity("fixed"))
        return test, data["phantoms"]

    # ---- methods -------------------------------------------------------------------------

    def run_folder(self, network: str) -> Path:
        return self.folder / "runs" / _folder_name(network)

    def train_config(self, network: str) -> TrainConfig:
        """The training settings of `network` (a key of `NETWORKS`)."""
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
            validation_phantoms=s.validation_phantoms,
            seed=s.seed,
        )
        if recipe.fibre_dropout and s.fibre_dropout_epochs is not None:
            config = config.replace(epochs=s.fibre_dropout_epochs)
        if recipe.model == "lgn":
            config = config.replace(
                model=replace(config.model, iterations=s.lgn_iterations, basis_size=s.lgn_basis_size,
                              width=s.lgn_network_width, jacobian_rank=s.lgn_jacobian_rank),
                epochs=s.lgn_epochs,
                learning_rate=s.lgn_learning_rate,
                schedule="cosine",
            )
        if recipe.model == "dri-unet":
            config = config.replace(train_phantoms=s.dri_unet_phantoms, validation_phantoms=s.dri_unet_validation_phantoms)
        if recipe.data == "data-learned":
            config = config.replace(data_loss=s.learned_loss)
        if dataset is not self.dataset and dataset.config.mesh_spacing_mm != s.mesh_spacing_mm:
            config = config.replace(physics_mesh_spacing_mm=s.mesh_spacing_mm)  # reconstruct on the main mesh
        if recipe.hybrid:  # Z-Net's run, its last epochs with the physics term
            config = config.replace(
                physics_weight=s.physics_weight,
                physics_from_epoch=s.epochs - s.physics_epochs,
                physics_mesh_spacing_mm=s.physics_mesh_spacing_mm,
            )
        return config

    def trained(self, network: str) -> Path:
        """Train `network` (a key of `NETWORKS`) unless done; returns its run folder.

        A hybrid network's epochs before its physics term are its data-only twin's (`Recipe.hybrid`):
        when the twin trains first, the hybrid's run folder is a copy of the twin's at that epoch,
        which the hybrid resumes (the same result as training it from the start, without paying
        for those epochs twice)."""
        config, dataset = self.train_config(network), self.training_data(network)
        folder = self.run_folder(network)
        done = folder / "done.json"
        if not done.exists():
            with Trainer(dataset, folder, config, resume=folder.exists(), progress=self.progress) as trainer:
                for hybrid in self._hybrids_branching_from(network):
                    branch = self.train_config(hybrid).physics_from_epoch * trainer.steps_per_epoch
                    if int(trainer.state.step) > branch:  # resumed past it: the hybrid trains from the start
                        continue
                    trainer.fit(stop_after_steps=branch)  # writes the checkpoints at `branch`
                    target = self.run_folder(hybrid)
                    partial = target.with_name(target.name + ".partial")  # a killed copy is redone
                    shutil.rmtree(partial, ignore_errors=True)
                    shutil.copytree(folder, partial)
                    partial.rename(target)
                trainer.fit()
                seconds = sum(r["seconds"] for r in trainer.records) + trainer.first_stage_seconds
            save_json(done, {"epochs": config.epochs, "seconds": seconds})
        return folder

    def _hybrids_branching_from(self, network: str) -> list[str]:
        """The hybrid networks not yet started whose runs are `network`'s until their physics
        term joins (earliest first)."""
        config = self.train_config(network)
        hybrids = [name for name, recipe in NETWORKS.items() if recipe.hybrid and name != network
                   and not self.run_folder(name).exists() and self.training_data(name) is self.training_data(network)]
        hybrids = [name for name in hybrids if self.train_config(name).physics_from_epoch > 0
                   and config.same_run_until(self.train_config(name), 0, 1)]  # differ only in the physics loss (or epochs)
        return sorted(hybrids, key=lambda name: self.train_config(name).physics_from_epoch)

    def method(self, name: str, active_fibres: int | None = None):
        """A reconstruction method: "DRI", `FINE_DRI`, a network name, or a network name +
        `REFINED` or `SYMMETRISED`; optionally with fewer fibres.

        Methods are kept, so each compiles once per study.
        """
        key = (name, active_fibres)
        if key not in self._methods:
            if name == "DRI":
                method = GaussNewtonMethod.for_dataset(self.dataset, "dri", active_fibres=active_fibres, progress=self.progress)
            elif name == FINE_DRI:
                method = self._fine_dri(active_fibres)
            elif name.endswith(REFINED):
                key_refinement = (REFINED, active_fibres)  # one compiled refinement for every network
                if key_refinement not in self._methods:
                    self._methods[key_refinement] = GaussNewtonMethod.for_dataset(
                        self.dataset, "dri", active_fibres=active_fibres, iterations=self.scale.refine_steps,
                        progress=self.progress,
                    )
                method = RefinedNetwork(self.method(name.removesuffix(REFINED), active_fibres), self._methods[key_refinement])
            elif name.endswith(SYMMETRISED):
                setup = self.dataset.config.measurement_setup()
                method = SymmetryAveraged(self.method(name.removesuffix(SYMMETRISED), active_fibres),
                                          Symmetries.of(setup, setup.layout(active_fibres)), self.dataset.reference)
            else:
                method = TrainedNetwork(self.trained(name), "best", active_fibres)
                reference = self.training_data(name).reference
                if not np.array_equal(reference, self.dataset.reference):  # trained on another mesh's data
                    method = Recalibrated(method, self.dataset.reference, reference)
            self._methods[key] = method
        return self._methods[key]

    def _fine_dri(self, active_fibres: int | None) -> Recalibrated:
        """DRI on the finer reconstruction mesh, data moved to its reference (`FINE_DRI`)."""
        if self.scale.dri_mesh_spacing_mm is None:
            raise ValueError(f"scale {self.scale.name!r} has no dri_mesh_spacing_mm: it does not run {FINE_DRI!r}")
        config = self.dataset.config
        setup = dataclasses.replace(config.measurement_setup(), scatter=config.phantoms.known_scatter("DRI"))
        mesh = config.mesh(self.scale.dri_mesh_spacing_mm)
        method = GaussNewtonMethod(mesh, setup, config.wavelengths_nm, "dri", active_fibres=active_fibres, progress=self.progress)
        return Recalibrated(method, self.dataset.reference, config.reference_ln_amplitude(mesh))

    def checkpoint_fingerprint(self, network: str) -> str:
        """SHA-256 of the best checkpoint of `network` (trained unless done), read once per study."""
        if network not in self._checkpoints:
            checkpoints = Checkpoints(self.trained(network))
            self._checkpoints[network] = checkpoints.fingerprint("best")
            checkpoints.close()
        return self._checkpoints[network]

    def method_identity(self, name: str, active_fibres: int | None = None) -> dict:
        """What produces the images of method `name`: Gauss-Newton settings, and for a network its
        checkpoint's fingerprint."""
        if name in ("DRI", FINE_DRI):
            return {"DRI": self.method(name, active_fibres).settings}
        if name.endswith(REFINED):
            network = name.removesuffix(REFINED)
            refinement = self.method(name, active_fibres).refinement
            return {**self.method_identity(network, active_fibres), "refinement": refinement.settings}
        if name.endswith(SYMMETRISED):
            symmetries = self.method(name, active_fibres).symmetries
            return {**self.method_identity(name.removesuffix(SYMMETRISED), active_fibres),
                    "symmetry_average": list(symmetries.names), "symmetries": symmetries.fingerprint}
        identity = {"network": name, "checkpoint": self.checkpoint_fingerprint(name), "active_fibres": active_fibres}
        if NETWORKS[name].model == "dri-unet":  # its images correct the DRI row's (`_compute`)
            identity["first_stage"] = self.method_identity("DRI", active_fibres)
        return identity

    def _reconstruction_cache(self, test_name: str, name: str, active_fibres: int | None) -> Path:
        tag = test_name + ("" if active_fibres is None else f"-{active_fibres}-fibres")
        return self.folder / "reconstructions" / tag / f"{_folder_name(name)}.npy"

    def reconstruction_key(self, test_identity: dict, name: str, active_fibres: int | None = None) -> str:
        """SHA-256 of everything that produced the images of `name` on a test set (and the version)."""
        provenance = {"test": test_identity, "method": self.method_identity(name, active_fibres), "version": __version__}
        return json_sha256(provenance)

    def reconstruct(self, test: TestSet, name: str, active_fibres: int | None = None) -> np.ndarray:
        """(B, 3, H, H) images of method `name` on `test`, cached on disk and reused only while
        what produced them is unchanged (`reconstruction_key`)."""
        path = self._reconstruction_cache(test.name, name, active_fibres)
        stamp = path.with_suffix(".json")
        key = self.reconstruction_key(test.identity, name, active_fibres)
        self.inputs[str(path.relative_to(self.folder))] = {
            "test": test.name, "method": name, "active_fibres": active_fibres, "key": key}
        if path.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
            images = np.load(path)
            if images.shape == test.truth.shape:
                return images
        images = np.asarray(self._compute(test, name, active_fibres), np.float32)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, images)
        save_json(stamp, {"key": key, "test": test.identity, "method": self.method_identity(name, active_fibres),
                          "version": __version__})
        return images

    def _compute(self, test: TestSet, name: str, active_fibres: int | None) -> np.ndarray:
        """The images of `name` on `test`, reusing the cached images a method starts from: a
        refined row refines its network's images, and DRI + U-Net corrects the DRI row's images
        (its first stage is that DRI: same mesh, settings and fibres; ≈ 6 min of the `small` study)."""
        method = self.method(name, active_fibres)
        if name.endswith(REFINED):
            start = self.reconstruct(test, name.removesuffix(REFINED), active_fibres)
            return method.refinement(test.ln_amplitude, test.mri, start=start)
        if name in NETWORKS and NETWORKS[name].model == "dri-unet":
            network = method.method if isinstance(method, Recalibrated) else method
            spacing = network.config.physics_mesh_spacing_mm or network.simulation.mesh_spacing_mm
            fibres = self.dataset.config.measurement_setup().measurement_mask(active_fibres)
            if spacing != self.dataset.config.mesh_spacing_mm or not np.array_equal(network.signal_mask, fibres):
                raise ValueError(f"{name} reconstructs on a {spacing} mm mesh from {int(network.signal_mask.sum())} "
                                 f"measurements, the DRI row on {self.dataset.config.mesh_spacing_mm} mm from "
                                 f"{int(fibres.sum())}: its first stage is not that row")
            return network.from_first_stage(self.reconstruct(test, "DRI", active_fibres), test.mri)
        return method(test.ln_amplitude, test.mri)

    def inputs_unchanged(self, inputs: dict[str, dict]) -> bool:
        """Whether every reconstruction in `inputs` (as recorded in `self.inputs`) would still be
        produced by the same test set, settings and checkpoint."""
        return all(
            self.reconstruction_key(self.test_identity(item["test"]), item["method"], item["active_fibres"]) == item["key"]
            for item in inputs.values()
        )

    def training_seconds(self, network: str) -> float:
        """Wall time of the training epochs of `network`, and of its first stage (DRI + U-Net's DRI
        of the training phantoms), after it was trained."""
        return float(json.loads((self.trained(network) / "done.json").read_text())["seconds"])
