"""What a training loop costs on top of the model: a hand-written loop, ``dpdl.train.fit``, a Torchbearer ``Trial``.

All three train the same model from the same initial weights on the same batches (built in memory
beforehand, so data loading is not measured) for the same number of steps, with Adam. Two hand loops
are timed: ``hand (bare)`` does only forward, loss, backward, step; ``hand (metrics)`` also keeps the
epoch's loss and accuracy the way the labs teach (``loss.item()`` and a count of correct predictions per
batch), which is the work ``fit`` and ``Trial`` do by default. Runs are interleaved (one run of each loop
per round) so that a busy machine slows them alike; the table gives each loop's median and its ratio to
the hand loops; the verdict uses the median of the per-round ratios of ``fit`` to ``hand (metrics)``.
Goal (issue "Benchmarks"): ``fit`` within 1.05x of the hand loop.

    python benchmarks/bench_training_loops.py                       # MLP on MNIST batches, 5 rounds
    python benchmarks/bench_training_loops.py --model cnn --steps 100
    DPDL_REQUIRE_CUDA=1 python benchmarks/bench_training_loops.py  # on a GPU machine

MNIST comes from the dpdl cache (``DPDL_DATA_DIR``, ``DPDL_DATA_MIRROR``).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torchbearer
from torch import nn

import dpdl
from dpdl.data.fast import mnist_loaders
from dpdl.models import BaselineMLP, BetterCNN
from dpdl.train import fit, make_trial

BATCH_SIZE = 128
LR = 1e-3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="BaselineMLP or BetterCNN (default mlp)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per run (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the loops (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dpdl.device()

    train_loader, _ = mnist_loaders(batch_size=BATCH_SIZE, device=device, seed=0, flatten=args.model == "mlp")
    batches = [batch for batch, _ in zip(train_loader, range(args.steps))]
    if len(batches) < args.steps:
        parser.error(f"--steps can be at most {len(batches)} (one epoch of MNIST at batch size {BATCH_SIZE})")
    torch.manual_seed(0)
    initial = BaselineMLP() if args.model == "mlp" else BetterCNN()
    initial.to(device)

    loops: dict[str, Callable[[nn.Module, torch.optim.Optimizer], float]] = {
        "hand (bare)": lambda model, optimizer: hand_loop(model, optimizer, batches, keep_metrics=False),
        "hand (metrics)": lambda model, optimizer: hand_loop(model, optimizer, batches, keep_metrics=True),
        "dpdl.train.fit": lambda model, optimizer: fit_loop(model, optimizer, batches, device),
        "torchbearer Trial": lambda model, optimizer: trial_loop(model, optimizer, batches, device),
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    losses: dict[str, float] = {}
    for loop in loops.values():  # warm-up: allocator, kernels, lazy imports
        model = copy.deepcopy(initial)
        loop(model, torch.optim.Adam(model.parameters(), lr=LR))
    for _ in range(args.rounds):
        for name, loop in loops.items():
            model = copy.deepcopy(initial)
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            torch.manual_seed(1)  # the same dropout masks in every loop (BetterCNN), so they train alike
            synchronize(device)
            start = time.perf_counter()
            loop(model, optimizer)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            losses[name] = final_loss(model, batches)

    print(f"# Training-loop overhead: {args.model}, {args.steps} steps of batch {BATCH_SIZE}, {args.rounds} rounds")
    print(describe_machine(device))
    print()
    print("| loop | median s | min s | max s | per step ms | / hand (bare) | / hand (metrics) | loss after |")
    print("|---|---|---|---|---|---|---|---|")
    bare = statistics.median(times["hand (bare)"])
    with_metrics = statistics.median(times["hand (metrics)"])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {median:.2f} | {min(runs):.2f} | {max(runs):.2f} | {1000 * median / args.steps:.1f} "
            f"| {median / bare:.3f} | {median / with_metrics:.3f} | {losses[name]:.4f} |"
        )
    # Paired by round: each round runs the loops back to back, so a slow spell of the machine hits both
    # sides of a ratio; the median of the per-round ratios is steadier than a ratio of medians.
    paired = statistics.median(f / h for f, h in zip(times["dpdl.train.fit"], times["hand (metrics)"]))
    print()
    print(
        f"fit / hand (metrics), median of the {args.rounds} per-round ratios = {paired:.3f} "
        f"(goal <= 1.05): {'met' if paired <= 1.05 else 'MISSED'}"
    )
    return 0


def hand_loop(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, keep_metrics: bool) -> float:
    """The loop students write in lab 4; with ``keep_metrics`` it also sums the loss and counts hits."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for X, y in batches:
        y_hat = model(X)
        loss = loss_fn(y_hat, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if keep_metrics:
            total_loss += loss.item() * len(y)
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            seen += len(y)
    return total_loss / max(seen, 1)


def fit_loop(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, device: torch.device) -> float:
    history = fit(model, optimizer, nn.CrossEntropyLoss(), batches, epochs=1, device=device, progress=False)
    return history["loss"][-1]


def trial_loop(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, device: torch.device) -> float:
    trial = make_trial(model, optimizer, nn.CrossEntropyLoss(), metrics=["loss", "acc"], device=device, verbose=0)
    trial.with_train_generator(batches)
    result = trial.run(epochs=1, verbose=0)
    return result[-1]["loss"]


def final_loss(model: nn.Module, batches: list) -> float:
    """Mean loss of the trained model on the first ten batches: the loops must have trained alike."""
    model.eval()
    with torch.no_grad():
        return statistics.fmean(nn.functional.cross_entropy(model(X), y).item() for X, y in batches[:10])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_machine(device: torch.device) -> str:
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU"
    )
    return (
        f"{where}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; python {sys.version.split()[0]}, "
        f"torch {torch.__version__}, torchbearer {torchbearer.__version__}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
