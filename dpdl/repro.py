"""Seeds and determinism switches, so that a lab gives the same numbers when re-run (every lab)."""

from __future__ import annotations

import os
import random

__all__ = ["seed_everything", "use_deterministic_algorithms"]


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device); returns the seed.

    ``deterministic=True`` also switches on the deterministic algorithms (slower on a GPU, and an error
    for operations that have no deterministic version), for when bit-for-bit repeatability matters more.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32); got {seed!r}")
    import numpy as np  # here, not at the top: `import dpdl` (and `dpdl --help`) must not load torch
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses such as DataLoader workers
    if deterministic:
        use_deterministic_algorithms(True)
    return seed


def use_deterministic_algorithms(enabled: bool = True) -> None:
    """Make cuDNN and torch pick deterministic kernels (or go back to the fast defaults)."""
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
