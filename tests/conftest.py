"""Shared test configuration: fast XLA compiles, float64 available, fixture paths."""

import os
from pathlib import Path

# The tests compile far more than they compute, and LLVM's optimisation passes are most of XLA's
# CPU compile time: without them the default suite runs ≈ 35 % faster on 2 cores (measured). Set
# before JAX starts; subprocesses inherit it, so results are only compared within one setting.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import nirst_jax  # noqa: F401  (sets the XLA CPU flags before JAX starts its backend)
import jax
import pytest

jax.config.update("jax_enable_x64", True)
# No persistent compilation cache: with jaxlib 0.10.2 on CPU, serialising some executables to it
# aborted or segfaulted the test process (CI stops 21 and 22, in the reproduction study).

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program at the end of each test file.

    Each compiled XLA:CPU executable holds about six memory mappings, and jit caches keep them
    for the life of the process; the default suite compiles thousands, and a process that
    reaches the kernel's limit (vm.max_map_count, 65 530) aborts inside the next compilation
    with no message (measured 2026-12-04: 64 376 mappings at a SIGABRT in test_training; ≤ 15 500 with this
    fixture). Programs shared within a file stay shared.
    """
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def nirfast_dir() -> Path:
    return FIXTURES / "nirfast"


def _float32_dot_precisions(jaxpr):
    for equation in jaxpr.eqns:
        if equation.primitive.name == "dot_general" and equation.invars[0].aval.dtype.name in ("float32", "complex64"):
            yield equation.params["precision"]
        for value in equation.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(inner, "eqns"):
                    yield from _float32_dot_precisions(inner)
                elif hasattr(getattr(inner, "jaxpr", None), "eqns"):
                    yield from _float32_dot_precisions(inner.jaxpr)


@pytest.fixture(scope="session")
def float32_dot_precisions():
    """A function: (fn, *args) → the list of precisions of every float32/complex64 matrix
    product in fn's traced program, nested programs included (None where none was asked)."""

    def precisions(fn, *args):
        return list(_float32_dot_precisions(jax.make_jaxpr(fn)(*args).jaxpr))

    return precisions
