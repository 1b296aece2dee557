"""How nbval starts and waits on its kernels: three patches to ``nbval.kernel``, made in the process that runs nbval.

``retry_kernel_starts`` starts again a kernel that died while starting (port races between kernels
started side by side), ``notice_dead_kernels`` fails a cell as soon as its kernel dies instead of after the
cell timeout, and ``start_kernels_in_sandbox`` starts the kernel inside the grading sandbox. The grading
subprocess (:mod:`dpdl.grading.recorder`) makes all three; the repository's ``conftest.py`` makes the first
for the notebooks nbval runs in the test suite.

Standard library only at import time (the grading subprocess imports this module without the ``dpdl``
package, see :mod:`dpdl.grading.runner`); nbval and jupyter_client are imported by the patches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "KERNEL_START_ATTEMPTS",
    "KERNEL_START_FAILURES",
    "KERNEL_DIED",
    "retry_kernel_starts",
    "notice_dead_kernels",
    "start_kernels_in_sandbox",
]

# How often nbval may start a kernel that died while starting (see `retry_kernel_starts`).
KERNEL_START_ATTEMPTS = 3
# jupyter_client's words for a kernel that died, or never answered, before its first cell.
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
# How often a cell's wait checks that its kernel is still alive (see `notice_dead_kernels`).
KERNEL_POLL_SECONDS = 0.5
KERNEL_DIED = "Kernel died while running the cell"  # what `notice_dead_kernels` raises


def retry_kernel_starts(attempts: int = KERNEL_START_ATTEMPTS) -> bool:
    """Let nbval start a kernel again, up to ``attempts`` times, when it died or never answered.

    jupyter_client picks a kernel's five TCP ports by binding to port 0 and letting go; the kernel binds
    them a second later. Kernels started side by side (``dpdl grade --workers``, pytest-xdist) can be
    handed the same port in between: the kernel dies with ``ZMQError: Address already in use`` (about
    1 in 60 starts with 16 at once here; jupyter/nbconvert#1066, treebeardtech/nbmake#129), or, more
    rarely, lives but never answers the client. No cell has run then, so starting again with fresh
    ports is safe. Patches ``nbval.kernel.start_new_kernel`` in this process; returns False where nbval
    is missing or no longer has that function.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts!r}")
    try:
        from nbval import kernel
    except ImportError:
        return False
    start = getattr(kernel, "start_new_kernel", None)
    if start is None:
        return False
    start = getattr(start, "__wrapped__", start)  # patching twice must not multiply the attempts

    def start_new_kernel(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, attempts + 1):
            try:
                return start(*args, **kwargs)
            except RuntimeError as error:  # nbval has shut the dead kernel down before re-raising
                if attempt == attempts or not str(error).startswith(KERNEL_START_FAILURES):
                    raise

    start_new_kernel.__wrapped__ = start  # type: ignore[attr-defined]
    start_new_kernel.__doc__ = start.__doc__
    kernel.start_new_kernel = start_new_kernel
    return True


def notice_dead_kernels(poll: float = KERNEL_POLL_SECONDS) -> bool:
    """Fail a cell as soon as its kernel dies (a crash, ``os._exit``, the out-of-memory killer).

    nbval waits for a cell's reply for the whole cell timeout, even when the kernel is already dead: two
    minutes lost per crash at the default. This patches ``nbval.kernel.RunningKernel.await_reply`` in this
    process to wait in ``poll``-second slices and to raise at once once the kernel process has exited;
    nbval then fails the cell, and the cells after it with "Kernel dead". Returns False where nbval
    is missing or no longer has that method.
    """
    from queue import Empty

    try:
        from nbval.kernel import RunningKernel
    except ImportError:
        return False
    original = getattr(RunningKernel, "await_reply", None)
    if original is None:
        return False
    original = getattr(original, "__wrapped__", original)

    def await_reply(self: Any, msg_id: str, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return original(self, msg_id, timeout=min(poll, left))
            except Empty:
                if not self.is_alive():
                    raise RuntimeError(KERNEL_DIED) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    await_reply.__wrapped__ = original  # type: ignore[attr-defined]
    await_reply.__doc__ = original.__doc__
    RunningKernel.await_reply = await_reply
    return True


def start_kernels_in_sandbox(spec: Mapping[str, Any]) -> bool:
    """Make nbval start its kernel with the sandbox's command line, reached over ``ipc`` sockets.

    ``spec`` comes from the grader (:func:`dpdl.grading.runner.run_nbval` writes it): ``argv`` (bwrap
    around ``python -m ipykernel_launcher -f {connection_file}``), ``shared`` (the directory bound into that sandbox alone,
    at the same path, for the connection file and the sockets) and ``uid`` (the kernel's uid as root,
    which must be able to read the connection file jupyter_client writes with mode 0600). Interrupts go
    as messages: a signal to bwrap would not reach the kernel in its PID namespace. Patches
    ``nbval.kernel.start_new_kernel`` in this process; returns False where nbval no longer has it.
    """
    try:
        from nbval import kernel
    except ImportError:
        return False
    if getattr(kernel, "start_new_kernel", None) is None:
        return False
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    uid = spec.get("uid")

    class SandboxKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                argv=list(spec["argv"]), display_name="Python 3 (dpdl grading sandbox)", language="python",
                interrupt_mode="message", env={}, resource_dir="",
            )  # fmt: skip

    class SandboxKernelManager(KernelManager):
        def write_connection_file(self, **kwargs: Any) -> None:
            super().write_connection_file(**kwargs)
            if uid is not None:
                os.chown(self.connection_file, uid, uid)

    attempts = [0]

    def start_new_kernel(startup_timeout: float = 60, kernel_name: str = "python", **kwargs: Any) -> Any:
        attempts[0] += 1  # a retried start gets fresh socket and connection file names
        shared = Path(spec["shared"])
        manager = SandboxKernelManager(
            kernel_name="dpdl-sandbox", kernel_spec_manager=SandboxKernelSpecs(), transport="ipc",
            ip=str(shared / f"kernel{attempts[0]}"), connection_file=str(shared / f"kernel{attempts[0]}.json"),
        )  # fmt: skip
        manager.start_kernel(**kwargs)
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=startup_timeout)
        except RuntimeError:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            raise
        return manager, client

    start_new_kernel.__doc__ = kernel.start_new_kernel.__doc__
    kernel.start_new_kernel = start_new_kernel
    return True
