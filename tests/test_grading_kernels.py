"""How nbval starts kernels: a kernel that died while starting is started again, and only then."""

import pytest

from dpdl.grading.kernels import retry_kernel_starts


class FlakyKernelStart:
    """Stands in for nbval's ``start_new_kernel``: raises ``error`` the first ``failures`` times."""

    def __init__(self, failures, error="Kernel died before replying to kernel_info"):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.error)
        return ("kernel manager", "client", args, kwargs)


@pytest.fixture
def nbval_kernel(monkeypatch):
    """nbval's kernel module, restored after the test."""
    from nbval import kernel

    monkeypatch.setattr(kernel, "start_new_kernel", kernel.start_new_kernel)
    return kernel


@pytest.mark.parametrize("error", ["Kernel died before replying to kernel_info", "Kernel didn't respond in 60 seconds"])
def test_a_kernel_that_died_or_never_answered_is_started_again(nbval_kernel, error):
    fake = FlakyKernelStart(failures=2, error=error)
    nbval_kernel.start_new_kernel = fake
    assert retry_kernel_starts(attempts=3)
    assert nbval_kernel.start_new_kernel(kernel_name="python3", cwd="x")[2:] == (
        (),
        {"kernel_name": "python3", "cwd": "x"},
    )
    assert fake.calls == 3


def test_kernel_starts_give_up_after_the_last_attempt(nbval_kernel):
    fake = FlakyKernelStart(failures=99)
    nbval_kernel.start_new_kernel = fake
    retry_kernel_starts(attempts=3)
    retry_kernel_starts(attempts=3)  # patching twice wraps the original once, not the wrapper
    with pytest.raises(RuntimeError, match="Kernel died before replying"):
        nbval_kernel.start_new_kernel()
    assert fake.calls == 3


def test_other_kernel_start_failures_are_not_retried(nbval_kernel):
    fake = FlakyKernelStart(failures=1, error="Kernel is in a bad mood")
    nbval_kernel.start_new_kernel = fake
    retry_kernel_starts()
    with pytest.raises(RuntimeError, match="bad mood"):
        nbval_kernel.start_new_kernel()
    assert fake.calls == 1


def test_kernel_start_retries_need_a_positive_count_and_nbval(nbval_kernel, monkeypatch):
    with pytest.raises(ValueError, match="at least 1"):
        retry_kernel_starts(attempts=0)
    monkeypatch.delattr(nbval_kernel, "start_new_kernel")
    assert retry_kernel_starts() is False, "an nbval without start_new_kernel is left alone, and says so"
