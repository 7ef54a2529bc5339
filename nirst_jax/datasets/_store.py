"""Writing a dataset store: .npy shards + a JSON manifest, atomic and resumable.

Layout of a store folder (readable with NumPy alone; see docs/data.md):

    manifest.json               config, seed, versions, mesh hash, counts, split, checksums
    mesh/nodes.npy, mesh/elements.npy
    reference_ln_amplitude.npy  (L, S, K) homogeneous phantom at the nominal background
    split.npy                   (count,) int8: 0 train, 1 validation, 2 test
    shards/shard-00000/<field>.npy + checksums.json   phantoms [0, shard_size), …

A shard appears only complete (written into a hidden folder, then renamed); an interrupted run
resumed with the same arguments regenerates only missing shards, and since every phantom is a
function of (config, seed, index) the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import jax
import jaxlib
import numpy as np

from .._atomic import atomic_path, current_umask, remove_temporaries, save_json
from .._random import RANDOM_STREAMS_VERSION
from .._version import __version__
from ..mesh import Mesh
from ._generate import ShardedGenerator, default_device_batch
from ._simulation import PhantomSimulator, SimulationConfig
from ._split import SPLIT_FRACTIONS, SPLITS, split_labels

FORMAT = "nirst-jax dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def save_npy(path: Path, array: np.ndarray) -> None:
    """`np.save`, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def _field_spec(simulator: PhantomSimulator) -> dict:
    shapes = jax.eval_shape(simulator, jax.random.key(0))
    return {name: {"shape": list(s.shape), "dtype": str(s.dtype)} for name, s in sorted(shapes.items())}


def _header(config: SimulationConfig, config_name: str, seed: int, count: int, shard_size: int, device_batch: int,
            mesh: Mesh, fields) -> dict:
    labels = split_labels(count, seed)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nirst_jax_version": __version__,
        "config_name": config_name,
        "config": config.to_dict(),
        "seed": int(seed),
        "random_streams": RANDOM_STREAMS_VERSION,
        # XLA compiles differently per backend, version, index width and batch, changing float
        # rounding: shards made under other values must not be mixed.
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "device_batch": int(device_batch),
        "count": int(count),
        "shard_size": int(shard_size),
        "n_shards": -(-count // shard_size),
        "mesh": {"nodes": mesh.n_nodes, "elements": mesh.n_elements, "sha256": mesh.content_hash},
        "fields": fields,
        "split": {
            "fractions": list(SPLIT_FRACTIONS),
            "counts": {name: int((labels == k).sum()) for k, name in enumerate(SPLITS)},
        },
    }
    return json.loads(json.dumps(header))  # as it reads back from the manifest (tuples → lists)


def read_manifest(folder: Path) -> dict:
    """The manifest of a store; a clear error when missing or unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not a nirst-jax dataset: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a nirst-jax dataset manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {manifest.get('format_version')!r}, this nirst-jax reads {FORMAT_VERSION}")
    return manifest


def _first_difference(stored, expected, path: str):
    """Path and values of the first entry where two JSON trees differ, or None."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for key in sorted(set(stored) | set(expected)):
            found = _first_difference(stored.get(key), expected.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if stored == expected else (path, stored, expected)


def _check_same(folder: Path, stored: dict, header: dict) -> None:
    """Refuse `stored` unless every header entry matches (results such as checksums are not in the header)."""
    found = _first_difference({k: stored.get(k) for k in header}, header, "")
    if found:
        path, old, new = found
        raise ValueError(
            f"{folder} holds a different dataset: its {path.lstrip('.')!r} is {json.dumps(old)[:200]}, "
            f"this run's is {json.dumps(new)[:200]}; use another --out or the original arguments"
        )


def verify_shard(folder: Path, shard: int, fields: dict) -> dict[str, str]:
    """Checksums of a complete shard, verified against its `checksums.json`; ValueError if corrupt."""
    path = folder / "shards" / shard_name(shard)
    try:
        expected = json.loads((path / "checksums.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"shard {path} is corrupt ({error}); delete it and resume to regenerate it") from None
    if sorted(expected) != sorted(f"{name}.npy" for name in fields):
        raise ValueError(f"shard {path} has files {sorted(expected)}, expected one per field {sorted(fields)}")
    for name, digest in expected.items():
        file = path / name
        if not file.is_file() or sha256_file(file) != digest:
            raise ValueError(f"shard file {file} is missing or corrupt (checksum mismatch); delete {path} and resume")
    return {f"shards/{shard_name(shard)}/{name}": digest for name, digest in expected.items()}


def _write_shard(folder: Path, shard: int, arrays: dict[str, np.ndarray]) -> None:
    shards = folder / "shards"
    temporary = Path(tempfile.mkdtemp(prefix=f".{shard_name(shard)}.", suffix=".partial", dir=shards))
    try:
        checksums = {}
        for name in sorted(arrays):
            file = temporary / f"{name}.npy"
            np.save(file, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            checksums[file.name] = sha256_file(file)
        (temporary / "checksums.json").write_text(json.dumps(checksums, indent=1, sort_keys=True) + "\n")
        temporary.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700
        temporary.rename(shards / shard_name(shard))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _normalisation(folder: Path, manifest: dict, reference: np.ndarray, labels: np.ndarray) -> dict:
    """Per-wavelength mean/std of ln A − reference and per-chromophore target mean/std (train split)."""
    shard_size = manifest["shard_size"]
    count = manifest["count"]
    wavelengths = reference.shape[0]
    signal_sum = np.zeros(wavelengths)
    signal_square = np.zeros(wavelengths)
    target_sum = np.zeros(3)
    target_square = np.zeros(3)
    n_signal = n_pixels = 0
    image_mask = np.load(folder / "image_mask.npy")
    for shard in range(manifest["n_shards"]):
        start = shard * shard_size
        train = labels[start : min(count, start + shard_size)] == 0
        if not train.any():
            continue
        path = folder / "shards" / shard_name(shard)
        signal = np.load(path / "ln_amplitude.npy")[train].astype(np.float64) - reference
        signal_sum += signal.sum((0, 2, 3))
        signal_square += (signal**2).sum((0, 2, 3))
        n_signal += signal[:, 0].size
        targets = np.load(path / "targets.npy")[train].astype(np.float64)
        inside = targets[:, :, image_mask]
        target_sum += inside.sum((0, 2))
        target_square += (inside**2).sum((0, 2))
        n_pixels += inside[:, 0].size
    if n_signal == 0:
        return {}
    signal_mean = signal_sum / n_signal
    target_mean = target_sum / n_pixels
    return {
        "signal": "(ln_amplitude - reference_ln_amplitude - signal_mean[λ]) / signal_std[λ]",
        "signal_mean": signal_mean.tolist(),
        "signal_std": np.sqrt(np.maximum(signal_square / n_signal - signal_mean**2, 0)).tolist(),
        "target_mean": target_mean.tolist(),
        "target_std": np.sqrt(np.maximum(target_square / n_pixels - target_mean**2, 0)).tolist(),
    }


def simulate_dataset(
    out,
    config: SimulationConfig,
    count: int,
    seed: int = 0,
    *,
    config_name: str = "custom",
    shard_size: int = 256,
    device_batch: int | None = None,
    resume: bool = False,
    progress: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Path:
    """Generate (or resume) a dataset store.

    Arguments:
        out: store folder (created; must be empty or absent unless `resume`).
        config: what to simulate.
        count: number of phantoms.
        seed: dataset seed (phantom i uses `fold_in(seed_key(seed, "dataset-phantom"), i)`).
        config_name: the config's name, recorded in the manifest.
        shard_size: phantoms per shard file.
        device_batch: phantoms per device per step.
        resume: continue an interrupted store made with the same arguments.
        progress: show a progress bar.
        process_index, process_count: multi-process generation (default: from
            `jax.process_index()` / `jax.process_count()`); process p writes the shards
            s ≡ p (mod process_count) and process 0 writes the manifest when all are done.

    Returns:
        The store folder.
    """
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if isinstance(shard_size, bool) or int(shard_size) != shard_size or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    process_index = jax.process_index() if process_index is None else int(process_index)
    process_count = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} must be in [0, {process_count})")
    folder = Path(out)
    config.dtype  # noqa: B018  (fails early when float64 is asked without x64)
    mesh = config.mesh()
    simulator = PhantomSimulator.create(config, mesh)
    device_batch = default_device_batch() if device_batch is None else device_batch
    if isinstance(device_batch, bool) or int(device_batch) != device_batch or device_batch < 1:
        raise ValueError(f"device_batch must be a positive integer, got {device_batch!r}")
    header = _header(config, config_name, seed, int(count), int(shard_size), int(device_batch), mesh,
                     _field_spec(simulator))

    complete = False
    if process_index == 0:
        if folder.exists() and any(folder.iterdir()):
            if not resume:
                raise ValueError(f"{folder} exists and is not empty; pass resume=True (--resume) to continue it")
            complete = _check_stored(folder, header)
            remove_temporaries(folder)  # what a killed write of this process left
        if not complete:
            _write_static_files(folder, header, config, simulator, mesh, seed)
    _barrier(process_count, "nirst-simulate-start")
    if process_index != 0:
        complete = _check_stored(folder, header)
    if complete:
        return folder
    for stale in (folder / "shards").glob(".shard-*.partial"):
        match = re.fullmatch(r"\.shard-(\d+)\..*\.partial", stale.name)
        if match and int(match[1]) % process_count == process_index:
            shutil.rmtree(stale, ignore_errors=True)

    mine = range(process_index, header["n_shards"], process_count)
    done = [s for s in mine if (folder / "shards" / shard_name(s)).is_dir()]
    for shard in done:
        verify_shard(folder, shard, header["fields"])
    todo = [s for s in mine if s not in done]
    sizes = {s: min(count, (s + 1) * shard_size) - s * shard_size for s in mine}
    generator = (ShardedGenerator(simulator, seed, device_batch=device_batch, cache_key=(config, mesh.content_hash))
                 if todo else None)
    bar = _progress_bar(sum(sizes.values()), sum(sizes[s] for s in done), progress)
    try:
        for shard in todo:
            start = shard * shard_size
            _write_shard(folder, shard, generator(np.arange(start, start + sizes[shard])))
            bar.update(sizes[shard])
    finally:
        bar.close()
    _barrier(process_count, "nirst-simulate-done")
    if process_index == 0:
        _finalise(folder, header)
    return folder


def _check_stored(folder: Path, header: dict) -> bool:
    """Refuse a store made with other arguments; True when it is already complete."""
    stored = read_manifest(folder)
    _check_same(folder, stored, header)
    return stored.get("status") == "complete"


def _write_static_files(folder, header, config, simulator, mesh, seed) -> None:
    """Manifest header first (so the folder is recognisable), then each missing static file."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MANIFEST).exists():
        save_json(folder / MANIFEST, {**header, "status": "incomplete"})
    (folder / "shards").mkdir(exist_ok=True)

    def reference():
        nominal = config.phantoms.tissue.nominal_background().astype(config.dtype)
        return np.asarray(simulator.model.homogeneous(nominal))  # the set-up's scattering law

    files = {
        "mesh/nodes.npy": lambda: mesh.nodes,
        "mesh/elements.npy": lambda: mesh.elements,
        "image_mask.npy": lambda: np.asarray(simulator.mask),
        "split.npy": lambda: split_labels(header["count"], seed),
        "reference_ln_amplitude.npy": reference,
    }
    for name, make in files.items():
        if not (folder / name).exists():
            save_npy(folder / name, make())


def _finalise(folder: Path, header: dict) -> None:
    checksums = {}
    for shard in range(header["n_shards"]):
        if not (folder / "shards" / shard_name(shard)).is_dir():
            raise ValueError(f"shard {shard} of {folder} is missing: did every process finish?")
        checksums.update(verify_shard(folder, shard, header["fields"]))
    for name in ("mesh/nodes.npy", "mesh/elements.npy", "image_mask.npy", "split.npy", "reference_ln_amplitude.npy"):
        checksums[name] = sha256_file(folder / name)
    reference = np.load(folder / "reference_ln_amplitude.npy").astype(np.float64)
    labels = np.load(folder / "split.npy")
    normalisation = _normalisation(folder, header, reference, labels)
    save_json(folder / MANIFEST, {**header, "status": "complete", "checksums": checksums, "normalisation": normalisation})


def _barrier(process_count: int, name: str) -> None:
    if process_count > 1 and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="phantom", desc="simulate", smoothing=0.1, mininterval=0.5, disable=not enabled
    )
