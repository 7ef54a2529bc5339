"""Run every benchmark and print one summary table (ours vs each baseline, as a ratio).

Usage: python benchmarks/run_all.py [--full] [--only forward,simulate,reconstruct,train,learned]

By default each benchmark runs in a quick mode (small meshes, few repeats: minutes on a 2-core
CPU); --full uses each script's own defaults (the figures in docs/benchmarks.md). Each script's
own output is shown as it runs; the table at the end collects their headline rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
QUICK = {
    "forward": ["--spacings", "2.5", "--repeats", "5", "--batch", "4"],
    "simulate": ["--count", "64", "--baseline-count", "4"],
    "reconstruct": ["--spacing", "4", "--batch", "2", "--repeats", "1"],
    "train": ["--models", "znet,ynet", "--batch", "4", "--steps", "2"],
    "learned": ["--spacing", "6", "--batch", "4", "--iterations", "2", "--repeats", "1", "--dri-spacing", "5", "--fine-data-spacing", "4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="each benchmark's default (full) settings")
    parser.add_argument("--only", default=",".join(QUICK), help="comma-separated benchmarks")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(QUICK))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {list(QUICK)}")
    with tempfile.TemporaryDirectory() as folder:
        summary = Path(folder) / "summary.jsonl"
        environment = {**os.environ, "NIRST_BENCHMARK_SUMMARY": str(summary)}
        failed = []
        for name in names:
            command = [sys.executable, str(HERE / f"{name}.py"), *([] if args.full else QUICK[name])]
            print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
            if subprocess.run(command, env=environment).returncode != 0:
                failed.append(name)
        rows = [json.loads(line) for line in summary.read_text().splitlines()] if summary.exists() else []
    print(f"\n{'benchmark':<12}{'quantity':<46}{'ours':>12}{'baseline':>12}{'ratio':>8}  baseline")
    for row in rows:
        baseline = row["baseline"]
        ratio = f"{row['ours'] / baseline:8.2f}" if baseline else f"{'':8s}"
        base = f"{baseline:10.3g} {row['unit']:<1}" if baseline is not None else f"{'':12s}"
        print(f"{row['benchmark']:<12}{row['quantity']:<46}{row['ours']:10.3g} {row['unit']:<1}{base:>12}{ratio}  "
              f"{row['baseline_name']}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
