"""How much an MNIST epoch of the baseline MLP costs with each way of feeding it (issue "Datasets").

Three ways, same model (784-784-10, ReLU), optimiser, batch size 128 and number of steps:

* ``torchvision``: ``DataLoader(MNIST(transform=ToTensor()), batch_size=128, shuffle=True)``, the usual lab code;
* ``fast``: ``dpdl.data.fast.mnist_loaders`` (whole split as one uint8 tensor, scaled per batch);
* ``compute``: the same batches built in memory beforehand, so only the model runs.

The goal: ``fast`` at least 2x faster than ``torchvision`` and within 1.15x of ``compute``. Runs are
interleaved (one epoch of each way per round) so that a busy machine slows all three alike; the table
gives medians. Run on a quiet machine: ``python benchmarks/bench_mnist_loader.py --epochs 1 --repeats 5``.
On a machine busy with other work, add ``--threads 1``: torch's threads wait for busy cores and an epoch
can take ten times longer. MNIST comes from the dpdl cache (``DPDL_DATA_DIR``, ``DPDL_DATA_MIRROR``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from dpdl.data.fast import mnist_loaders
from dpdl.data.vision import mnist

try:
    from dpdl.models import BaselineMLP
except ImportError:  # the script also runs where dpdl.models is not there yet

    def BaselineMLP() -> nn.Module:  # noqa: N802
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 784), nn.ReLU(), nn.Linear(784, 10))


BATCH_SIZE = 128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the three ways (default 3)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    torchvision_loader = DataLoader(
        mnist("train", transform=transforms.ToTensor()), batch_size=BATCH_SIZE, shuffle=True
    )
    fast_loader, _ = mnist_loaders(batch_size=BATCH_SIZE, device=device, seed=0)
    prebuilt = [(X.clone(), y.clone()) for X, y in fast_loader]  # compute only: batches ready in memory
    assert len(prebuilt) == len(fast_loader) == len(torchvision_loader) == 469

    ways = {"torchvision": torchvision_loader, "fast": fast_loader, "compute": prebuilt}
    model = BaselineMLP().to(device)
    make_optimizer = {"adam": lambda p: torch.optim.Adam(p, lr=1e-3), "sgd": lambda p: torch.optim.SGD(p, lr=0.1)}
    optimizer = make_optimizer[args.optimizer](model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    for loader in ways.values():  # warm-up: first-call costs (allocator, kernels, file cache)
        run_epoch(model, optimizer, loss_fn, loader, max_steps=20)

    seconds: dict[str, list[float]] = {name: [] for name in ways}
    loads = []
    for _ in range(args.repeats):
        for name, loader in ways.items():
            start = time.perf_counter()
            for _epoch in range(args.epochs):
                run_epoch(model, optimizer, loss_fn, loader)
            seconds[name].append((time.perf_counter() - start) / args.epochs)
            print(
                f"round {len(seconds[name])}: {name:<12} {seconds[name][-1]:.2f} s/epoch", file=sys.stderr, flush=True
            )
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))

    print_report(seconds, args, loads)
    return 0


def run_epoch(model, optimizer, loss_fn, loader, max_steps: int | None = None) -> None:
    model.train()
    for step, (X, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()


def print_report(seconds: dict[str, list[float]], args, loads: list[float]) -> None:
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"MNIST train epoch, baseline MLP 784-784-10, {args.optimizer}, batch {BATCH_SIZE}, 469 steps, CPU")
    print(f"{args.repeats} interleaved rounds x {args.epochs} epoch(s); seconds per epoch\n")
    print(f"{'way':<12} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for name, values in seconds.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<12} {medians[name]:>9.2f} {min(values):>7.2f} {max(values):>7.2f}  {runs}")
    speedup = medians["torchvision"] / medians["fast"]
    overhead = medians["fast"] / medians["compute"]
    print()
    print(f"torchvision / fast = {speedup:.2f}x   (goal >= 2.00x: {'met' if speedup >= 2 else 'NOT met'})")
    print(f"fast / compute     = {overhead:.2f}x   (goal <= 1.15x: {'met' if overhead <= 1.15 else 'NOT met'})")
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"numpy {np.__version__}, {platform.platform()}"
    )
    print(
        f"CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"1-min load average after each round: {', '.join(f'{x:.1f}' for x in loads)}"
    )


if __name__ == "__main__":
    sys.exit(main())
