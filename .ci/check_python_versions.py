#!/usr/bin/env python3
"""Does the README's install command resolve on every Python the README promises (3.11.5 to 3.13)?

For each version, at its first supported release and a late one (X.Y.99), pip resolves
``pip install -c constraints.txt -e ".[dev,site]"`` as it would there, without that interpreter:
``--dry-run --ignore-installed --only-binary=:all: --python-version X.Y.Z``. Wheels only, as on a laptop
without compilers. The pinned set needs Python 3.11.5 (soupsieve 4.1.2; numpy 2.4, ipython 9 and 26 more
need 3.11): ``python .ci/check_python_versions.py 3.10.0 3.11.0`` shows those two fail, and
``--suggest 3.10.0`` starts finding other pins for 3.10, which environment markers in ``constraints.txt``
could carry (the resolver backtracks for minutes with 28 pins lifted; not done).

    python .ci/check_python_versions.py            # the table; exit 1 if a version does not resolve
    python .ci/check_python_versions.py 3.10.0 3.11.0        # other versions
    python .ci/check_python_versions.py --suggest 3.10.0   # which pins fail there, and what pip picks instead

Exit status: 0 every version resolves, 1 one does not, 2 no package index answered (nothing was checked).
It needs the package index (CI has it): PyPI, or ``PIP_INDEX_URL``. pip's configuration files and local
wheel folders (``PIP_FIND_LINKS``, ``PIP_EXTRA_INDEX_URL``, ``PIP_CONSTRAINT``) are left out: they say what
one machine holds, not what a student gets, and a folder of wheels carries no Requires-Python data, so pip
stops at a too-new wheel there instead of choosing an older release. It downloads wheels (torch's too, once
per version, then from pip's cache) to read their metadata; it installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ["3.11.5", "3.11.99", "3.12.0", "3.12.99", "3.13.0", "3.13.99"]
SHOWN = ("torch", "numpy", "ipython", "matplotlib", "scikit-learn")
_FAILED_PIN = re.compile(
    r"The user requested \(constraint\) ([A-Za-z0-9_.\-]+)=="
    r"|Package '([A-Za-z0-9_.\-]+)' requires a different Python"
    r"|No matching distribution found for ([A-Za-z0-9_.\-]+)=="
)
_NO_INDEX = (
    "Could not fetch URL",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "No route to host",
    "Network is unreachable",
)


def resolve(version: str, constraints: Path) -> tuple[bool, str, dict]:
    """``(resolved, pip's output, pip's --report)`` of the README's install for Python ``version``."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--python-version", version, "--report", str(report), "--disable-pip-version-check",
            "-c", str(constraints), "-e", ".[dev,site]",
        ]  # fmt: skip
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIREMENT")
        }
        env["PIP_CONFIG_FILE"] = os.devnull
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        data = json.loads(report.read_text()) if done.returncode == 0 and report.exists() else {}
    return done.returncode == 0, output, data


def chosen(report: dict) -> dict[str, str]:
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report.get("install", [])}


def check(versions: list[str], constraints: Path) -> int:
    print(f"| Python | resolves | {' | '.join(SHOWN)} |")
    print(f"|---|---|{'---|' * len(SHOWN)}")
    failed = False
    for version in versions:
        ok, output, report = resolve(version, constraints)
        if not ok and any(sign in output for sign in _NO_INDEX):
            print(f"no package index answered; nothing was checked:\n{output[-800:]}", file=sys.stderr)
            return 2
        picked = chosen(report)
        why = "" if ok else " (" + ", ".join(sorted(_failing(output))) + ")"
        print(f"| {version} | {'yes' if ok else '**no**' + why} | {' | '.join(picked.get(n, '') for n in SHOWN)} |")
        failed |= not ok
    return 1 if failed else 0


def suggest(version: str, constraints: Path) -> int:
    """Drop the pins that fail at ``version`` one round at a time, then say what pip picks for them there."""
    lines = constraints.read_text().splitlines()
    dropped: set[str] = set()
    with tempfile.TemporaryDirectory() as folder:
        trial = Path(folder) / "constraints.txt"
        for _ in range(30):
            kept = [line for line in lines if _name(line) not in dropped]
            trial.write_text("\n".join(kept) + "\n")
            ok, output, report = resolve(version, trial)
            if ok:
                picked = chosen(report)
                for name in sorted(dropped):
                    print(f"{name}=={picked.get(name, '?')}  # for Python {version}")
                return 0
            failing = _failing(output) - dropped
            if not failing:
                print(output[-2000:], file=sys.stderr)
                return 1
            dropped |= failing
    return 1


def _failing(output: str) -> set[str]:
    """The pinned packages pip names as the reason a resolution failed."""
    return {name.lower().replace("_", "-") for match in _FAILED_PIN.findall(output) for name in match if name}


def _name(line: str) -> str:
    return re.split(r"[=<>!~;\s\[]", line.strip(), maxsplit=1)[0].lower().replace("_", "-") if line.strip() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "versions", nargs="*", default=VERSIONS, help=f"Python versions (default: {' '.join(VERSIONS)})"
    )
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument(
        "--suggest", metavar="VERSION", help="list the failing pins for VERSION and pip's choice instead"
    )
    args = parser.parse_args(argv)
    if args.suggest:
        return suggest(args.suggest, args.constraints)
    return check(args.versions, args.constraints)


if __name__ == "__main__":
    sys.exit(main())
