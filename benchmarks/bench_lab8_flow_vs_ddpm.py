"""Lab 8's choice: flow matching or DDPM for digits on a CPU, with the same network and the same training steps.

Both train ``dpdl.diffusion.build()``'s SmallUNet with ``dpdl.diffusion.train`` (same seed, batches,
Adam, cosine learning rate, weight average) for ``--steps`` steps; only the loss differs
(``flow_matching_loss`` against ``ddpm_loss`` on the 1000-step linear schedule). Halfway and at the end,
each samples ``--samples`` digits from the same noise: flow matching with Euler steps, DDPM with ancestral
steps (its own 1000, and fewer, respaced). A small CNN trained on 20k real digits judges them: its mean
confidence (real test digits score about 0.95), the share of samples it is sure of (> 0.9), the entropy
of its class shares (1 = all ten digits equally often, 0 = one digit) and the mean ink (real: 0.13).

    python benchmarks/bench_lab8_flow_vs_ddpm.py                  # 600 steps; DDPM sampled with 20 and 100 steps
    python benchmarks/bench_lab8_flow_vs_ddpm.py --full-ddpm      # also DDPM's own 1000 steps at the end (minutes)
    python benchmarks/bench_lab8_flow_vs_ddpm.py --methods flow --steps 2400   # how far longer training goes
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

from dpdl import diffusion
from dpdl.data import mnist_tensors
from dpdl.models import SimpleCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of each method")
    parser.add_argument("--samples", type=int, default=300, help="digits sampled per measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-ddpm", action="store_true", help="also sample DDPM with all 1000 steps")
    parser.add_argument("--methods", nargs="+", choices=["flow", "ddpm"], default=["flow", "ddpm"])
    parser.add_argument("--channels", type=int, nargs="+", default=None, help="the U-Net's widths (default: RECIPE's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    judge, judge_accuracy, real_confidence = train_judge()
    print(
        f"judge: SimpleCNN, test accuracy {judge_accuracy:.3f}, mean confidence on real test digits {real_confidence:.3f}"
    )
    alpha_bars = diffusion.ddpm_alpha_bars()
    recipe = dict(diffusion.RECIPE, num_steps=args.steps)
    if args.channels:
        recipe["channels"] = tuple(args.channels)
    noise = torch.randn(args.samples, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    samplers = {
        "flow matching": [("Euler", 10), ("Euler", 20)],
        "DDPM": [("ancestral", 20), ("ancestral", 100)] + ([("ancestral", 1000)] if args.full_ddpm else []),
    }
    losses = {
        "flow matching": diffusion.flow_matching_loss,
        "DDPM": lambda model, x0: diffusion.ddpm_loss(model, x0, alpha_bars),
    }
    rows = []
    chosen = {"flow": "flow matching", "ddpm": "DDPM"}
    losses = {chosen[name]: losses[chosen[name]] for name in args.methods}
    for method, loss_fn in losses.items():

        def measure(step, model, method=method):
            if step not in (args.steps // 2, args.steps):
                return
            for sampler, steps in samplers[method]:
                if steps == 1000 and step != args.steps:
                    continue  # DDPM's own sampler costs minutes: only for the trained model
                start = time.perf_counter()
                if method == "DDPM":
                    x = diffusion.ddpm_sample(
                        model, noise, alpha_bars, steps, generator=torch.Generator().manual_seed(2)
                    )
                else:
                    x = diffusion.euler_sample(model, noise, steps)
                seconds = time.perf_counter() - start
                rows.append((method, step, f"{sampler} {steps}", seconds, *judged(judge, diffusion.to_unit_range(x))))
                print(" | ".join(format_row(rows[-1])), flush=True)

        start = time.perf_counter()
        model = diffusion.build(recipe)
        diffusion.train(model, recipe, loss_fn=loss_fn, callback=measure, callback_every=args.steps // 2)
        print(f"{method}: {args.steps} steps trained in {time.perf_counter() - start:.0f} s (with the measurements)")
    print()
    print("| method | training steps | sampler | sampling s | judge confidence | sure (> 0.9) | class entropy | ink |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(format_row(row)) + " |")


def train_judge():
    """A SimpleCNN trained for two epochs on the last 20k training digits: (model, test accuracy, confidence)."""
    torch.manual_seed(0)
    X, y = mnist_tensors("train")
    X, y = diffusion.to_model_range(X[-20_000:]), y[-20_000:]
    judge = SimpleCNN()
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    for _ in range(2):
        order = torch.randperm(len(X))
        for start in range(0, len(X), 128):
            batch = order[start : start + 128]
            loss = F.cross_entropy(judge(X[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    judge.eval()
    X_test, y_test = mnist_tensors("test")
    with torch.no_grad():
        probabilities = judge(diffusion.to_model_range(X_test)).softmax(1)
    accuracy = (probabilities.argmax(1) == y_test).float().mean().item()
    return judge, accuracy, probabilities.max(1).values.mean().item()


@torch.no_grad()
def judged(judge, images):
    """Images in [0, 1] -> (mean confidence, share with confidence > 0.9, class entropy / log 10, mean ink)."""
    probabilities = judge(images * 2 - 1).softmax(1)
    confidence = probabilities.max(1).values
    share = torch.bincount(probabilities.argmax(1), minlength=10).float() / len(images)
    entropy = -(share * share.clamp_min(1e-12).log()).sum().item() / math.log(10)
    return confidence.mean().item(), (confidence > 0.9).float().mean().item(), entropy, images.mean().item()


def format_row(row):
    method, step, sampler, seconds, confidence, sure, entropy, ink = row
    return [
        method,
        str(step),
        sampler,
        f"{seconds:.1f}",
        f"{confidence:.3f}",
        f"{sure:.3f}",
        f"{entropy:.3f}",
        f"{ink:.3f}",
    ]


if __name__ == "__main__":
    main()
