"""Which device a lab trains on, chosen the same way everywhere (labs 1-8).

CUDA if it is there, else Apple's MPS, else the CPU. ``DPDL_DEVICE`` forces one (``cpu``, ``cuda``,
``cuda:1``, ``mps``); ``DPDL_REQUIRE_CUDA=1`` turns a missing GPU into an error, so that a GPU CI job
can never pass quietly on the CPU.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dpdl.flags import flag

if TYPE_CHECKING:
    import torch

__all__ = ["device", "device_reason", "DeviceUnavailableError"]


class DeviceUnavailableError(RuntimeError):
    """The device that the environment asks for is not available on this machine."""


def device() -> torch.device:
    """The ``torch.device`` to train on; see :func:`device_reason` for why it was chosen."""
    return _choose()[0]


def device_reason() -> str:
    """One sentence saying which device :func:`device` picks and why (shown by ``dpdl doctor``)."""
    return _choose()[1]


def _choose() -> tuple[torch.device, str]:
    import torch  # here, not at the top: `import dpdl` (and `dpdl --help`) must not load torch

    forced = os.environ.get("DPDL_DEVICE", "").strip()
    require_cuda = flag("DPDL_REQUIRE_CUDA", on="a missing GPU is an error", off="fall back to MPS or the CPU")
    cuda_ok = torch.cuda.is_available()
    if require_cuda and not cuda_ok:
        raise DeviceUnavailableError(
            "DPDL_REQUIRE_CUDA=1 but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
            "Run on a machine with an NVIDIA GPU and a CUDA build of torch, or unset DPDL_REQUIRE_CUDA."
        )
    if forced:
        try:
            chosen = torch.device(forced)
        except RuntimeError as err:
            raise ValueError(
                f"DPDL_DEVICE={forced!r} is not a device torch understands; use cpu, cuda, cuda:N or mps"
            ) from err
        if chosen.type == "cuda" and not cuda_ok:
            raise DeviceUnavailableError(f"DPDL_DEVICE={forced!r} but torch sees no CUDA device; unset it or use cpu")
        if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"DPDL_DEVICE={forced!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        if chosen.type == "mps" and not _mps_available():
            raise DeviceUnavailableError(f"DPDL_DEVICE={forced!r} but MPS is not available; unset it or use cpu")
        if require_cuda and chosen.type != "cuda":
            raise DeviceUnavailableError(f"DPDL_REQUIRE_CUDA=1 contradicts DPDL_DEVICE={forced!r}; unset one of them")
        return chosen, f"{chosen} because DPDL_DEVICE={forced!r}"
    if cuda_ok:
        return torch.device("cuda"), f"cuda because torch sees {torch.cuda.get_device_name(0)}"
    if _mps_available():
        return torch.device("mps"), "mps because torch sees Apple's Metal backend and no CUDA device"
    return torch.device("cpu"), "cpu because torch sees neither a CUDA nor an MPS device"


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
