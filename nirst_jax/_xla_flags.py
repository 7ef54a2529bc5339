"""XLA CPU settings applied when nirst_jax is imported (before JAX starts its backend).

- `--xla_cpu_experimental_ynn_fusion_type=-reduce` (no YNNPACK reduce fusions): with jaxlib
  0.10.2 the YNNPACK reduce kernels crash (SIGSEGV in `make_unary_reduce_impl`) on the
  real-valued forward model for meshes of ≈2800 nodes and more; reproduced deterministically,
  and gone with this flag. Only reductions are taken off YNNPACK: with every YNNPACK fusion
  off (the earlier setting `=`), float32 products fall back to single-threaded Eigen, which
  aborts with `std::bad_alloc` (or is killed for memory) on a (17, 17) @ (17, 12…15) product,
  a front size the solver meets with 12 or 14 rim fibres on an 8 mm disk mesh.
- `--xla_cpu_multi_thread_eigen=false`: keeps each small dense kernel single-threaded, which
  makes the solver about twice as fast on two cores (measured; see docs/benchmarks.md).

A flag already present in `XLA_FLAGS` is left as the user set it; `NIRST_KEEP_XLA_FLAGS=1`
skips all of this. The flags only take effect if JAX's backend was not started before the
import; otherwise a warning says so.
"""

from __future__ import annotations

import os
import sys
import warnings

_DEFAULTS = {
    "--xla_cpu_experimental_ynn_fusion_type": "-reduce",
    "--xla_cpu_multi_thread_eigen": "false",
}


def configure_xla_cpu() -> None:
    """Add the default CPU flags to `XLA_FLAGS` unless told otherwise."""
    if os.environ.get("NIRST_KEEP_XLA_FLAGS"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    missing = [f"{name}={value}" for name, value in _DEFAULTS.items() if name not in flags]
    if not missing:
        return
    if "jax" in sys.modules and _backend_started():
        warnings.warn(
            "JAX's backend started before nirst_jax was imported, so the CPU flags "
            f"{missing} could not be applied; the forward model may crash on CPU for "
            "large meshes. Import nirst_jax first or set XLA_FLAGS yourself.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        if not xla_bridge.backends_are_initialized():
            return False
        import jax

        return jax.default_backend() == "cpu"
    except (ImportError, AttributeError):
        return False
