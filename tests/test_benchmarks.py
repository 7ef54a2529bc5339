"""The accelerator benchmark's pipeline in its tiny mode on CPU: every figure it exists to measure
comes back in its JSON and markdown summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.extended
def test_accelerator_benchmark_tiny_mode_writes_every_figure(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "accelerator.py"), "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((out / "accelerator.json").read_text())
    assert document["mode"] == "tiny" and document["machine"]["backend"] == "cpu"
    rows = {(r["benchmark"], r["quantity"]): r for result in document["results"] for r in result["rows"]}
    quantities = " | ".join(q for _, q in rows)
    for needed in ("phantoms/s, vmapped batch", "20 000 phantoms end to end", "znet samples/s data-only",
                   "znet samples/s hybrid", "DRI per phantom", "lgn inference per phantom"):
        assert needed in quantities, needed
    assert all(r["ours"] > 0 for r in rows.values())
    assert "| forward |" in (out / "accelerator.md").read_text()
