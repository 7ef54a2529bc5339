"""Shared test configuration: float64 available, fixture paths."""

import tempfile
from pathlib import Path

import nirst_jax  # noqa: F401  (sets the XLA CPU flags before JAX starts its backend)
import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Several tests compile identical programs (e.g. a training run and its resumed twin): reuse them.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="nirst-jax-test-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def nirfast_dir() -> Path:
    return FIXTURES / "nirfast"
