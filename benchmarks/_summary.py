"""Rows for `benchmarks/run_all.py`: each benchmark records its headline comparisons here.

When the environment variable NIRST_BENCHMARK_SUMMARY names a file, `record` appends one JSON
line per comparison to it; otherwise it does nothing.
"""

from __future__ import annotations

import json
import os


def record(benchmark: str, quantity: str, ours: float, baseline: float | None, unit: str, baseline_name: str = "") -> None:
    """Append one comparison (ours vs a named baseline; ratio = ours / baseline)."""
    path = os.environ.get("NIRST_BENCHMARK_SUMMARY")
    if not path:
        return
    row = {"benchmark": benchmark, "quantity": quantity, "ours": float(ours), "unit": unit,
           "baseline": None if baseline is None else float(baseline), "baseline_name": baseline_name}
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
