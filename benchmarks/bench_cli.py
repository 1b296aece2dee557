"""How long the cheap ``dpdl`` commands take to start, as a ratio against ``python -c pass`` (issue 17, section 5).

Every command used to import torch, nbformat and friends before parsing its arguments (2.4-3.7 s);
the goal is under 1 s for ``dpdl --help`` and ``dpdl data list``. The ratio against a bare interpreter
start makes figures from a busy or a slow machine comparable: both are measured in the same rounds,
interleaved, and the table gives medians.

    python benchmarks/bench_cli.py --rounds 7
    python benchmarks/bench_cli.py --repo /tmp/before --repo .   # two checkouts, interleaved

Commands run offline (``DPDL_OFFLINE=1``) and with the data mirror the environment names.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASELINE = ("python -c pass", [sys.executable, "-c", "pass"])
COMMANDS = [
    ["--help"],
    ["--version"],
    ["data", "list"],
    ["data", "path", "mnist"],
    ["notebooks", "--help"],
    ["grade", "--help"],
    ["check", "--help"],
    ["release", "--help"],
    ["site", "--help"],
    ["doctor", "--help"],
]
GOAL_SECONDS = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of each command, interleaved (default 7)")
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="a checkout whose dpdl is measured; repeat it to compare (default: this one)",
    )
    args = parser.parse_args(argv)
    repos = [repo.resolve() for repo in args.repo or [Path(__file__).resolve().parents[1]]]
    runs = [(BASELINE[0], None, BASELINE[1])] + [
        ("dpdl " + " ".join(words), repo, [sys.executable, "-m", "dpdl", *words])
        for words in COMMANDS
        for repo in repos
    ]
    times: dict[tuple[str, Path | None], list[float]] = {(name, repo): [] for name, repo, _ in runs}
    for _ in range(args.rounds):
        for name, repo, command in runs:
            # `python -m` puts the working directory first on sys.path: run in the checkout measured.
            env = {**os.environ, "PYTHONPATH": str(repo or ""), "DPDL_OFFLINE": "1"}
            start = time.perf_counter()
            done = subprocess.run(
                command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
            )
            times[name, repo].append(time.perf_counter() - start)
            if done.returncode not in (0, 2):
                print(f"{name} failed ({done.returncode}): {done.stderr.decode()[-300:]}", file=sys.stderr)
    base = statistics.median(times[BASELINE[0], None])
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds interleaved"
    )
    print()
    print("| command | checkout | median s | min s | / python -c pass | under 1 s |")
    print("|---|---|---:|---:|---:|---|")
    for name, repo, _ in runs:
        median = statistics.median(times[name, repo])
        verdict = "" if repo is None else ("yes" if median < GOAL_SECONDS else "**no**")
        where = "" if repo is None else f"`{repo.name}`"
        print(f"| `{name}` | {where} | {median:.2f} | {min(times[name, repo]):.2f} | {median / base:.1f} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
