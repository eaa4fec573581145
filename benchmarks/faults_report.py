"""Run the fault and soak scenarios of ``tests/faults`` and print a summary of their figures.

Run from the repository root (never part of the test run)::

    .venv/bin/python benchmarks/faults_report.py            # the soak variants (~15 min)
    .venv/bin/python benchmarks/faults_report.py --fast     # only the normal-suite variants

Any other arguments go to pytest (``-k lock``, ``-x``...). It runs
``python -m pytest tests/faults [--soak]`` with ``FAULTS_REPORT`` pointing at a temporary file;
every test appends its figures to it (``tests/faults/_support.report``): kills survived, turns
run, turns lost, duplicated commits, repeated side effects, recovery times after Redis
restarts and network cuts, dead-lettered counts by reason, idle CPU with 10,000 agents, Redis
memory and keys before and after a long run, worker RSS. The same figures are printed by the
tests themselves with ``-s``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    fast = "--fast" in argv
    extra = [a for a in argv if a != "--fast"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.jsonl"
        command = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider"]
        if not fast:
            command += ["--soak", "-m", "soak"]
        command += extra
        print("$", " ".join(command), flush=True)
        env = {**os.environ, "FAULTS_REPORT": str(report)}
        status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
        rows = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    print()
    print(f"{'scenario':<40} figures")
    print("-" * 100)
    for row in rows:
        name = row.pop("test")
        figures = ", ".join(f"{k}={v}" for k, v in row.items())
        print(f"{name:<40} {figures}")
    print("-" * 100)
    print(f"pytest exit status {status}; {len(rows)} scenario(s) reported")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
