"""nbval over notebooks under each of torch's CPU kernel sets (ATEN_CPU_CAPABILITY): pass/fail and time per notebook.

torch picks its CPU kernels at start-up: AVX-512 where the processor has it, else AVX2, else plain code
(``default``). Laptops and CI runners differ, and the kernels round differently, so a notebook that trains
a model can pass on one machine and fail on another (issue 15: lab 5's activation maximisation passed only
with AVX-512). This runs every notebook once per capability, each in a fresh nbval process, with
``ATEN_CPU_CAPABILITY`` set (``native`` leaves torch's own choice) and a fresh data cache per capability, so
weights cached by ``dpdl.train.load_or_train`` are trained under that capability rather than loaded from
another run; datasets are still read from the usual cache and mirrors. Prints a Markdown table; exits 1 if
any notebook fails.

    python benchmarks/cpu_capabilities.py                                  # all labs and exercises: native, avx2, default
    python benchmarks/cpu_capabilities.py --capabilities avx2,default labs/lab5    # some notebooks and capabilities
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_notebook_suite import ROOT, discover, run_nbval

CAPABILITIES = ("native", "avx2", "default")


@dataclass
class Run:
    notebook: str
    capability: str
    used: str  # the kernel set torch reported in that environment
    passed: bool
    seconds: float
    failed_cells: list[str]
    detail: str = ""  # the end of nbval's report when it failed


def environment(capability: str, data_dir: Path) -> dict[str, str]:
    """The notebook's environment: the capability, a fresh data cache, the usual data cache and mirrors to read."""
    env = {**os.environ, "CI": "1", "DPDL_PROGRESS": "0", "DPDL_DATA_DIR": str(data_dir)}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability != "native":
        env["ATEN_CPU_CAPABILITY"] = capability
    from dpdl.data.store import (
        cache_dir,  # the usual cache, read as a mirror: no dataset is downloaded again
    )

    mirrors = [str(cache_dir()), *filter(None, os.environ.get("DPDL_DATA_MIRROR", "").split(os.pathsep))]
    env["DPDL_DATA_MIRROR"] = os.pathsep.join(mirrors)
    return env


def kernel_set(env: dict[str, str]) -> str:
    """What torch reports it uses in ``env`` (an unknown ATEN_CPU_CAPABILITY falls back silently)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    return result.stdout.strip() or f"? ({result.stderr.strip().splitlines()[-1:]})"


def run_notebook(path: Path, capability: str, env: dict[str, str], used: str) -> Run:
    result, seconds, cases = run_nbval(path, env)
    failed = [
        case.get("name", "?") for case in cases if case.find("failure") is not None or case.find("error") is not None
    ]
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    detail = "" if result.returncode == 0 else "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    return Run(name, capability, used, result.returncode == 0, seconds, failed, detail)


def table(runs: list[Run], capabilities: list[str]) -> str:
    notebooks = list(dict.fromkeys(run.notebook for run in runs))
    by_key = {(run.notebook, run.capability): run for run in runs}
    used = {run.capability: run.used for run in runs}
    header = "| notebook | " + " | ".join(f"{c} ({used.get(c, '?')})" for c in capabilities) + " |"
    rows = [header, "|---|" + "---|" * len(capabilities)]
    for notebook in notebooks:
        cells = []
        for capability in capabilities:
            run = by_key.get((notebook, capability))
            if run is None:
                cells.append("-")
            elif run.passed:
                cells.append(f"ok {run.seconds:.0f} s")
            else:
                where = f": {', '.join(run.failed_cells[:3])}" if run.failed_cells else ""
                cells.append(f"**FAILED** {run.seconds:.0f} s{where}")
        rows.append(f"| `{notebook}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: labs/ and exercises/)")
    parser.add_argument(
        "--capabilities",
        default=",".join(CAPABILITIES),
        metavar="CAP,CAP",
        help="comma-separated kernel sets: native (torch's choice), avx512, avx2, default (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    args.capabilities = [c.strip() for c in args.capabilities.split(",") if c.strip()]
    unknown = [c for c in args.capabilities if c not in ("native", "avx512", "avx2", "default", "zvector", "vsx")]
    if unknown:
        parser.error(f"unknown capabilities {unknown}; ATEN_CPU_CAPABILITY takes avx512, avx2, default (or native)")
    notebooks = discover(args.paths)
    if not notebooks:
        parser.error(f"no notebooks under {args.paths}")
    runs = []
    for capability in args.capabilities:
        with tempfile.TemporaryDirectory(prefix=f"dpdl-{capability}-") as data_dir:
            env = environment(capability, Path(data_dir))
            used = kernel_set(env)
            for path in notebooks:
                run = run_notebook(path, capability, env, used)
                status = "ok    " if run.passed else "FAILED"
                print(f"{capability:8} ({used}) {run.seconds:6.1f} s  {status}  {run.notebook}", flush=True)
                if run.detail:
                    print("    " + run.detail.replace("\n", "\n    "), flush=True)
                runs.append(run)
    print()
    print(table(runs, args.capabilities))
    return 0 if all(run.passed for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
