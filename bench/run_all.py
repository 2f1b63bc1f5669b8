"""Every benchmark in ``bench/``, one after the other, with one summary (``make bench``).

    .venv/bin/python bench/run_all.py                 # the quick scale (minutes)
    .venv/bin/python bench/run_all.py --scale full    # the sizes the issues name (much longer)
    .venv/bin/python bench/run_all.py --only charge_run usage_ingest

Each benchmark runs as its own process with the arguments of the chosen scale, in its own database, and
prints its figures and, on its last line(s), JSON; each measures its own baseline in the same run (the raw-SQL
ceiling of the charge run, for instance). This script keeps every JSON line, writes them with the machine's
description to ``bench/results/latest.json`` and prints a table. What each figure means: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"

#: The parties of the quick generated data sets (the full scale uses the issue's 40k / 1.4M / 1M).
GENERATE_QUICK = ["--merchants", "400", "--listings", "14000", "--consumers", "20000", "--due", "2000"]

#: name → (script, quick arguments, full arguments). Full sizes are the issues' own.
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "admission": ("admission.py", ["--consumers", "100000", "--decisions", "10000"], []),
    "charge_run": ("charge_run.py", ["--orders", "10000"], ["--orders", "100000"]),
    "usage_ingest": ("usage_ingest.py", ["--events", "50000"], []),
    "portal_pages": ("portal_pages.py", ["--orders", "100000", "--merchant-orders", "10000", "--runs", "20"], []),
    "reminder_history": ("reminder_history.py", ["--orders", "1000"], []),
    "http_load": (
        "http_load.py",
        ["--duration", "8", "--connections", "8", "--consumers", "30", "--admission-consumers", "5000"],
        [],
    ),
    "charge_scaleout": (
        "charge_scaleout.py",
        ["--orders", "2000", "--chunk", "100"],
        ["--orders", "20000", "--workers", "4"],
    ),
    # generate builds the larger data set, growth builds the smaller one and measures both (docs/performance.md).
    "generate": (
        "generate.py",
        [*GENERATE_QUICK, "--orders", "200000", "--database", "bnpl_gen_quick"],
        ["--orders", "5000000", "--database", "bnpl_gen5m"],
    ),
    "growth": (
        "growth.py",
        [*GENERATE_QUICK, "--generate", "40000", "--databases", "bnpl_growth_quick", "bnpl_gen_quick"],
        ["--due", "10000", "--generate", "1000000", "--databases", "bnpl_gen", "bnpl_gen5m"],
    ),
}


def machine() -> dict[str, object]:
    memory_gib = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
    }


def json_lines(output: str) -> list[dict[str, object]]:
    """The JSON objects a benchmark printed (one per line; other lines are its commentary)."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def run(name: str, scale: str) -> dict[str, object]:
    script, quick, full = BENCHMARKS[name]
    command = [sys.executable, str(ROOT / "bench" / script), *(full if scale == "full" else quick)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    elapsed = round(time.perf_counter() - started, 1)
    tail = proc.stdout.strip().splitlines()[-15:]
    print("\n".join(f"   {line}" for line in tail), flush=True)
    return {
        "name": name,
        "command": " ".join(command[1:]),
        "seconds": elapsed,
        "ok": proc.returncode == 0,
        "results": json_lines(proc.stdout),
    }


def table(runs: list[dict[str, object]]) -> str:
    rows = [("benchmark", "figures", "time")]
    for entry in runs:
        figures = "; ".join(
            ", ".join(f"{key}={value}" for key, value in result.items()) for result in entry["results"]
        ) or ("FAILED" if not entry["ok"] else "(no JSON)")
        rows.append((str(entry["name"]), figures, f"{entry['seconds']} s"))
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{row[0]:<{width}}  {row[2]:>8}  {row[1]}" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=["quick", "full"], default="quick")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args()
    names = args.only or list(BENCHMARKS)
    report = {"scale": args.scale, "machine": machine(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report["runs"] = [run(name, args.scale) for name in names]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(report["runs"]))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    if not all(entry["ok"] for entry in report["runs"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
