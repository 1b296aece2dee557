"""How long `dpdl release` and `dpdl site` take on this machine: the site's goal is a full build in CI
(≤ 60 s on the 2-core CI machine).

    python benchmarks/bench_site.py [--rounds 3]

Each round writes a fresh release into a temporary folder, then builds the site from it into another; it
prints the machine line, each round's seconds and the median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import sphinx

    from dpdl.release import write_release
    from dpdl.site import build_site

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Sphinx "
        f"{sphinx.__version__}, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    releases, sites = [], []
    for round_number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            release = write_release(Path(work) / "release", root=ROOT)
            releases.append(time.perf_counter() - start)
            start = time.perf_counter()
            site = build_site(Path(work) / "site", release=release, root=ROOT)
            sites.append(time.perf_counter() - start)
            pages = sum(1 for _ in site.rglob("*.html"))
            size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file()) / 1e6
        print(
            f"round {round_number}: release {releases[-1]:.1f} s, site {sites[-1]:.1f} s ({pages} pages, {size:.0f} MB)"
        )
    print(
        f"median: release {statistics.median(releases):.1f} s, site {statistics.median(sites):.1f} s, "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
