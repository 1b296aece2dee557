"""MNIST time-to-accuracy: the baseline MLP to 98 % and BetterCNN to 99 % test accuracy, fast vs classic data.

Each run trains from the same seed with the same recipe (model, optimiser, learning-rate schedule, batch
size); only the data pipeline differs:

* ``classic``: ``DataLoader(MNIST(transform=Compose([ToTensor(), Normalize(...)])), shuffle=True)``, the
  recipe most tutorials use (images decoded from PIL and converted one at a time), with its shuffle drawn
  like the fast loader's so that both see the same batches;
* ``fast``: ``dpdl.data.fast.mnist_loaders`` (the whole split as one uint8 tensor, scaled per batch).

BetterCNN also runs with its weights in the ``channels_last`` memory format (``--formats``): on a CPU,
PyTorch's max-pooling over NCHW tensors took a third of a training step in our profile, and over NHWC it
is several times faster, so a CNN step costs about a third less. The format is a property of the model's
weights (a 1-channel batch is already NHWC-contiguous), so it applies to either pipeline.

After every epoch the model is evaluated on the 10,000 test images; a run stops at the first epoch whose
test accuracy reaches the target. ``train s`` is the time spent training up to that epoch (the clock is
paused while evaluating); ``total s`` adds the evaluations. Runs are compared per epoch too: a run that
crosses the target one epoch later (float rounding differs between the pipelines, so their paths drift
apart) costs a whole epoch more, which the time to the target shows and the time per epoch does not.
Goals (issue "Benchmarks"): MLP <= 30 s, CNN <= 90 s on the 2-core CPU, and the course's recipe (fast
data, and channels_last for the CNN) >= 2x faster than the classic recipe (``classic``, NCHW).

    python benchmarks/bench_time_to_accuracy.py                      # both models, both pipelines
    python benchmarks/bench_time_to_accuracy.py --models mlp --pipelines fast
    DPDL_REQUIRE_CUDA=1 python benchmarks/bench_time_to_accuracy.py  # on a GPU machine

MNIST comes from the dpdl cache (``DPDL_DATA_DIR``, ``DPDL_DATA_MIRROR``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

import dpdl
from dpdl.data.fast import mnist_loaders
from dpdl.data.vision import MNIST_MEAN, MNIST_STD, mnist
from dpdl.models import BaselineMLP, BetterCNN
from dpdl.repro import seed_everything
from dpdl.train import evaluate


@dataclass(frozen=True)
class Recipe:
    """How one model is trained: the same for both pipelines."""

    target: float
    max_epochs: int
    batch_size: int
    lr: float
    goal_seconds: float


RECIPES = {
    # Adam with the learning rate decayed linearly to zero over max_epochs (a cheap, robust schedule).
    "mlp": Recipe(target=0.98, max_epochs=8, batch_size=128, lr=1e-3, goal_seconds=30),
    "cnn": Recipe(target=0.99, max_epochs=8, batch_size=64, lr=2e-3, goal_seconds=90),
}


@dataclass
class Run:
    model: str
    pipeline: str
    memory_format: str
    epochs: int
    accuracy: float
    train_seconds: float
    total_seconds: float
    reached: bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--pipelines", nargs="+", choices=["fast", "classic"], default=["fast", "classic"])
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=list(FORMATS),
        default=list(FORMATS),
        help="memory formats of BetterCNN's weights (the MLP has no image tensors: nchw only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dpdl.device()

    runs = []
    for model_name in args.models:
        formats = args.formats if model_name == "cnn" else ["nchw"]
        for pipeline, memory_format in [(p, f) for f in formats for p in args.pipelines]:
            run = time_to_accuracy(model_name, pipeline, memory_format, device, args.seed)
            print(
                f"{model_name} {pipeline} {memory_format}: {run.accuracy:.4f} after {run.epochs} epochs, "
                f"train {run.train_seconds:.1f} s, total {run.total_seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            runs.append(run)
    print_report(runs, device)
    return 0


FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def time_to_accuracy(model_name: str, pipeline: str, memory_format: str, device: torch.device, seed: int) -> Run:
    recipe = RECIPES[model_name]
    flatten = model_name == "mlp"
    train_loader, test_loader = make_loaders(pipeline, recipe.batch_size, flatten, device, seed)
    seed_everything(seed)
    model = (BaselineMLP() if flatten else BetterCNN()).to(device, memory_format=FORMATS[memory_format])
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.max_epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    loss_fn = nn.CrossEntropyLoss()

    train_seconds = total_seconds = 0.0
    accuracy = 0.0
    for epoch in range(1, recipe.max_epochs + 1):
        start = time.perf_counter()
        train_epoch(model, optimizer, schedule, loss_fn, train_loader, device)
        synchronize(device)
        trained = time.perf_counter()
        accuracy = evaluate(model, test_loader, device=device, metrics=("accuracy",))["accuracy"]
        train_seconds += trained - start
        total_seconds += time.perf_counter() - start
        if accuracy >= recipe.target:
            return Run(model_name, pipeline, memory_format, epoch, accuracy, train_seconds, total_seconds, True)
    return Run(model_name, pipeline, memory_format, recipe.max_epochs, accuracy, train_seconds, total_seconds, False)


def train_epoch(model, optimizer, schedule, loss_fn, loader, device: torch.device) -> None:
    """The plain loop (no metrics kept): what differs between runs is only where the batches come from."""
    model.train()
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def make_loaders(pipeline: str, batch_size: int, flatten: bool, device: torch.device, seed: int):
    if pipeline == "fast":
        return mnist_loaders(batch_size=batch_size, device=device, seed=seed, flatten=flatten)
    steps = [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    if flatten:
        steps.append(transforms.Lambda(torch.flatten))
    transform = transforms.Compose(steps)
    # The fast loader's shuffle, replayed: both pipelines then feed the same batches in the same order, so the
    # runs follow the same path to the target and only the time per batch differs.
    train_loader = DataLoader(
        mnist("train", transform=transform),
        batch_size=batch_size,
        sampler=SameShuffle(60_000, seed),
        generator=torch.Generator(),
    )
    test_loader = DataLoader(mnist("test", transform=transform), batch_size=1000)
    return train_loader, test_loader


class SameShuffle(torch.utils.data.Sampler):
    """A new random order every epoch, drawn exactly as ``TensorLoader(shuffle=True, generator=seed)`` draws it."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_report(runs: list[Run], device: torch.device) -> None:
    print("# MNIST time-to-accuracy")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    print(
        f"{where}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| model | pipeline | weights | target | epochs | test accuracy | train s | s / epoch | total s | goal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        recipe = RECIPES[run.model]
        verdict = "met" if run.reached and run.train_seconds <= recipe.goal_seconds else "missed"
        if run.pipeline == "classic":
            verdict = "(reference)" if run.reached else "not reached"
        elif not run.reached:
            verdict = "not reached"
        print(
            f"| {run.model} | {run.pipeline} | {run.memory_format} | {recipe.target:.2f} | {run.epochs} "
            f"| {run.accuracy:.4f} | {run.train_seconds:.1f} | {run.train_seconds / run.epochs:.2f} | {run.total_seconds:.1f} "
            f"| {verdict} (<= {recipe.goal_seconds:.0f} s) |"
        )
    by_key = {(run.model, run.pipeline, run.memory_format): run for run in runs}
    print()
    for model_name in RECIPES:
        classic = by_key.get((model_name, "classic", "nchw"))
        for memory_format in FORMATS:
            same = by_key.get((model_name, "classic", memory_format))
            fast = by_key.get((model_name, "fast", memory_format))
            if not (fast and fast.reached):
                continue
            if same and same.reached:
                print(
                    f"{model_name}, {memory_format} weights: classic / fast data = "
                    f"{same.train_seconds / fast.train_seconds:.2f}x (the data pipeline alone)"
                )
            if classic and classic.reached:
                speedup = classic.train_seconds / fast.train_seconds
                per_epoch = (classic.train_seconds / classic.epochs) / (fast.train_seconds / fast.epochs)
                print(
                    f"{model_name}: classic recipe (nchw) / fast data with {memory_format} weights = {speedup:.2f}x "
                    f"to the target (goal >= 2x: {'met' if speedup >= 2 else 'missed'}), {per_epoch:.2f}x per epoch"
                )


if __name__ == "__main__":
    sys.exit(main())
