"""Shared test configuration: float64 available, fixture paths."""

from pathlib import Path

import nirst_jax  # noqa: F401  (sets the XLA CPU flags before JAX starts its backend)
import jax
import pytest

jax.config.update("jax_enable_x64", True)
# No persistent compilation cache: with jaxlib 0.10.2 on CPU, serialising some executables to it
# aborted or segfaulted the test process (CI stops 21 and 22, in the reproduction study).

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def nirfast_dir() -> Path:
    return FIXTURES / "nirfast"
