"""Atomic writes: all or nothing, no temporary files left, normal permissions."""

import os
import stat

import numpy as np
import pytest

from nirst_jax._atomic import atomic_path, current_umask, save_npz


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "data.npz"
    save_npz(target, x=np.arange(3))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.npz"]


def test_written_files_get_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "data.npz"
    save_npz(target, x=np.zeros(2))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~current_umask()
    np.testing.assert_array_equal(np.load(target)["x"], np.zeros(2))
