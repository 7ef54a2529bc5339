"""Orbax checkpoints of a `TrainState`: `last` (for resuming) and `best` (by validation loss)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

KINDS = ("last", "best")
_TEMPORARY = ".orbax-checkpoint-tmp"  # the suffix of orbax's folders of unfinished saves


class Checkpoints:
    """The checkpoint folders of a run: RUN/checkpoints/{last,best}/<step>/, one kept in each.

    Orbax writes each checkpoint to a temporary folder and renames it when complete, so an
    interrupted save never replaces a good checkpoint.

    Arguments:
        run: the run folder.
        writer: this is the training process that writes the run (it deletes temporary folders
            of killed saves).
    """

    def __init__(self, run, writer: bool = False):
        self.root = Path(run).absolute() / "checkpoints"
        # A save killed mid-write leaves orbax's temporary folder behind; only the run's writer
        # may delete it (a reader could otherwise remove a save in progress). The writer deletes
        # it here, before the managers open: orbax's own cleanup runs in a background thread and
        # raced the manager's listing of the same folder (ENOENT on `<step>.orbax-checkpoint-tmp`,
        # 1 resume in 6 after a kill, orbax-checkpoint 0.12.8). Saves are synchronous: background
        # saves (orbax's async mode) measured no faster in the small-scale study (their writes
        # share the cores with training), and under two processes they left the processes out of
        # step at shutdown.
        if writer:
            for kind in KINDS:
                for stale in (self.root / kind).glob(f"*{_TEMPORARY}*"):
                    shutil.rmtree(stale)
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
        self._managers = {kind: ocp.CheckpointManager(self.root / kind, options=options) for kind in KINDS}

    def latest_step(self, kind: str = "last") -> int | None:
        """Step of the stored checkpoint, or None."""
        return self._manager(kind).latest_step()

    def save(self, kind: str, state) -> None:
        """Store `state` (replacing the previous one of this kind)."""
        step = int(jax.device_get(state.step))
        manager = self._manager(kind)
        if manager.latest_step() == step:
            return
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()

    def discard(self, kind: str) -> None:
        """Delete the stored checkpoint of this kind, if any."""
        manager = self._manager(kind)
        step = manager.latest_step()
        if step is not None:
            manager.delete(step)

    def restore(self, kind: str, template):
        """The stored state, with the structure, dtypes and shardings of `template`.

        Raises:
            ValueError: no checkpoint of this kind.
        """
        manager = self._manager(kind)
        step = manager.latest_step()
        if step is None:
            raise ValueError(f"no {kind!r} checkpoint in {self.root}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def fingerprint(self, kind: str = "best") -> str | None:
        """SHA-256 of the stored checkpoint's files (paths and bytes), or None when there is none:
        identifies the parameters that produced a result."""
        step = self.latest_step(kind)
        if step is None:
            return None
        folder = self.root / kind / str(step)
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        """Release the managers; later saves and restores are refused (closing twice is fine)."""
        for manager in self._managers.values():
            manager.close()
        self._managers = {}

    def _manager(self, kind: str) -> ocp.CheckpointManager:
        if not self._managers:
            raise ValueError(f"the checkpoints in {self.root} were closed; open them again to use them")
        return self._managers[kind]

