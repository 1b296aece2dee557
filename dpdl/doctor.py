"""``dpdl doctor``: what this machine gives the labs (versions, device, data locations).

The first thing to paste into a question to the teaching team.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

__all__ = ["report", "register"]


def report() -> list[tuple[str, str]]:
    """(label, value) rows describing the environment, in the order ``dpdl doctor`` prints them."""
    import torch

    from dpdl.device import device_reason

    rows = [
        ("dpdl", _version("dpdl")),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("torchvision", _version("torchvision")),
        ("torchbearer", _version("torchbearer")),
        ("cuda available", _cuda_summary(torch)),
        ("mps available", str(bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()))),
        ("torch threads", str(torch.get_num_threads())),
    ]
    try:
        rows.append(("device", device_reason()))
    except Exception as err:  # a forced device that is missing: report it rather than crash
        rows.append(("device", f"ERROR: {err}"))
    rows.extend(_data_rows())
    return rows


def _data_rows() -> list[tuple[str, str]]:
    try:
        from dpdl.data import locations
    except ImportError:
        return [("data cache", os.environ.get("DPDL_DATA_DIR", "(dpdl.data not available)"))]
    return list(locations())


def _cuda_summary(torch) -> str:
    if not torch.cuda.is_available():
        return f"False (torch CUDA build: {torch.version.cuda or 'none'})"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"True, CUDA {torch.version.cuda}: {names}"


def _version(dist: str) -> str:
    import importlib.metadata  # here: a twentieth of a second that `dpdl --help` need not pay

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _run(args: argparse.Namespace) -> int:
    rows = report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 1 if any(value.startswith("ERROR") for _, value in rows) else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="print versions, the device dpdl would use, and data locations")
    parser.set_defaults(func=_run)
