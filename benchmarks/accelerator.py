"""Every accelerator figure in one run: forward throughput, dataset generation, network training
and DRI, sized to finish in about 9 minutes on one H200; writes a JSON and a markdown summary.

Usage: python benchmarks/accelerator.py [--out accelerator-results] [--tiny]

Runs the benchmark scripts beside this file with the accelerator sizes below (each in its own
process, with a time limit, so one failure or overrun does not lose the others) and collects
their headline rows (`_summary.record`):
- forward: phantoms/s of the vmapped forward model at 2850 nodes (2 mm mesh; the study's
  ≈ 3000), batch 128, and the Jacobian / J·v / Jᵀ·w costs;
- simulate: generation of 4 000 phantoms at 2850 nodes including writing the store,
  extrapolated to the study's 20 000;
- train: Z-Net and Y-Net samples/s at batch 128, data-only and hybrid (physics loss on the
  2850-node mesh), and the time of 200 epochs × 14 000 samples;
- reconstruct: DRI per phantom in a vmapped batch of 16 (1797 nodes; batch 64 compiled past
  its time limit on an H200);
- learned: the learned Gauss-Newton's training samples/s and inference vs DRI per phantom.
`--tiny` runs the same pipeline at toy sizes (a minute or two on a CPU: the test of this script).
Record the figures in docs/benchmarks.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nirst_jax._atomic import atomic_path, save_json

HERE = Path(__file__).parent
ACCELERATOR = {  # benchmark → (arguments, time limit in s)
    "forward": (["--spacings", "2.0", "--batch", "128", "--repeats", "5"], 150),
    "simulate": (["--count", "4000", "--baseline-count", "4", "--mesh-spacing", "2.0"], 100),
    "train": (["--batch", "128", "--steps", "5", "--spacing", "2.0", "--models", "znet,ynet"], 160),
    "reconstruct": (["--spacing", "2.5", "--batch", "16", "--repeats", "1"], 150),
    "learned": (["--spacing", "4.0", "--batch", "16", "--repeats", "1"], 130),
}
TINY = {
    "forward": (["--spacings", "8", "--batch", "2", "--repeats", "1"], 300),
    "simulate": (["--count", "8", "--baseline-count", "1", "--mesh-spacing", "8"], 300),
    "train": (["--batch", "2", "--steps", "1", "--spacing", "8", "--models", "znet", "--width", "0.125"], 300),
    "reconstruct": (["--spacing", "8", "--batch", "2", "--repeats", "1"], 300),
    "learned": (["--spacing", "8", "--batch", "2", "--iterations", "1", "--width", "0.125", "--repeats", "1"], 300),
}


def environment() -> dict:
    """The machine: JAX backend and devices (asked in a child process, so this one stays light)."""
    probe = "import jax, json; d = jax.devices(); print(json.dumps({'backend': jax.default_backend(), " \
            "'devices': [x.device_kind for x in d], 'jax': jax.__version__}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    info = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {"error": result.stderr[-500:]}
    return {**info, "host": platform.node(), "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def run_benchmark(name: str, arguments: list[str], limit: float, summary: Path) -> dict:
    """Run one script; returns its status, wall time and the rows it recorded."""
    command = [sys.executable, str(HERE / f"{name}.py"), *arguments]
    print(f"\n=== {name}: {' '.join(command[1:])} (limit {limit:.0f} s)", flush=True)
    before = len(summary.read_text().splitlines()) if summary.exists() else 0
    started = time.perf_counter()
    try:
        code = subprocess.run(command, env={**os.environ, "NIRST_BENCHMARK_SUMMARY": str(summary)}, timeout=limit).returncode
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        status = f"stopped after its {limit:.0f} s limit"
    lines = summary.read_text().splitlines()[before:] if summary.exists() else []
    return {"benchmark": name, "arguments": arguments, "status": status,
            "seconds": round(time.perf_counter() - started, 1), "rows": [json.loads(line) for line in lines]}


def markdown(results: list[dict], machine: dict, mode: str) -> str:
    """The summary as a markdown table, one row per recorded figure."""
    lines = [f"# Accelerator benchmarks ({mode})", "",
             f"Machine: {', '.join(machine.get('devices', []))} ({machine.get('backend')}), jax {machine.get('jax')}, "
             f"host {machine.get('host')} ({machine.get('cpus')} CPUs).", "",
             "| benchmark | quantity | ours | baseline | ratio | baseline is |", "|---|---|---|---|---|---|"]
    for result in results:
        if not result["rows"]:
            lines.append(f"| {result['benchmark']} | {result['status']} | | | | |")
        for row in result["rows"]:
            baseline = row["baseline"]
            ratio = f"{row['ours'] / baseline:.2f}" if baseline else ""
            shown = f"{baseline:.3g} {row['unit']}" if baseline is not None else ""
            lines.append(f"| {row['benchmark']} | {row['quantity']} | {row['ours']:.3g} {row['unit']} | {shown} | "
                         f"{ratio} | {row['baseline_name']} |")
    lines += ["", "Wall time per benchmark: " + ", ".join(f"{r['benchmark']} {r['seconds']:.0f} s ({r['status']})" for r in results)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("accelerator-results"), help="folder for the JSON and markdown")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the pipeline on any machine")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(ACCELERATOR))
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else ACCELERATOR
    names = list(plan) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(plan))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {list(plan)}")
    machine = environment()
    mode = "tiny" if args.tiny else "accelerator sizes"
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            results.append(run_benchmark(name, *plan[name], Path(folder) / "summary.jsonl"))
            # Written after every benchmark: what finished survives a later overrun or kill.
            document = {"mode": mode, "machine": machine, "results": results}
            save_json(args.out / "accelerator.json", document)
            with atomic_path(args.out / "accelerator.md") as temporary:
                temporary.write_text(markdown(results, machine, mode))
    print("\n" + markdown(results, machine, mode))
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
