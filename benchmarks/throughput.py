"""Training throughput (images per second of optimiser steps) of the registry's classifiers, and
ThyroNet-X4 against the same network assembled from torchvision's ResNet/Bottleneck classes.

    python benchmarks/throughput.py [--models thyronet_x4 resnet18 ...] [--sizes 96 224]
                                    [--batch 32] [--steps 5] [--threads 2] [--precision auto|32|bf16]

Each model trains ``--steps`` timed Adam steps (after one untimed warm-up step) on random
1-channel batches, in the precision training would use on this processor. The torchvision twin
is ``torchvision.models.ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)`` with
every block's 3x3 grouped convolution replaced by a 5x5 one: the same architecture, parameters
and arithmetic, so the ratio of the two throughputs, timed alternately in one process, shows the
cost of thyronet's implementation with the machine's noise cancelled. Not a test: the figures go
in docs/results.md with the processor this prints.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from thyronet.models import create_model, list_models
from thyronet.training.provenance import cpu_bf16, processor


def torchvision_x4() -> nn.Module:
    """ThyroNet-X4 from torchvision's building blocks (1-channel stem, 2 classes, 5x5 grouped)."""
    model = ResNet(Bottleneck, [3, 4, 6, 3], num_classes=2, groups=32, width_per_group=4)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for block in model.modules():
        if isinstance(block, Bottleneck):
            old = block.conv2
            block.conv2 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=5, stride=old.stride,
                                    padding=2, groups=old.groups, bias=False)
    return model


def step_rate(model: nn.Module, size: int, batch: int, steps: int, bf16: bool) -> float:
    """Images per second over ``steps`` timed optimiser steps."""
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, labels = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch,))

    def one_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    one_step()  # warm-up: allocations, oneDNN kernel selection
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list_models(task="classify"))
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 224])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the X4 / torchvision comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_bf16() is not None)
    print(f"processor: {processor()}; {args.threads} threads, batch {args.batch}, {'bf16 autocast' if bf16 else 'fp32'}")
    print(f"| model | {' | '.join(f'{s} px img/s' for s in args.sizes)} |")
    print(f"| --- | {' | '.join('---:' for _ in args.sizes)} |")
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2, in_chans=1)
        rates = [step_rate(model, size, args.batch, args.steps, bf16) for size in args.sizes]
        print(f"| {name} | {' | '.join(f'{r:.1f}' for r in rates)} |", flush=True)
    for size in args.sizes:
        ours, theirs = create_model("thyronet_x4", num_classes=2, in_chans=1), torchvision_x4()
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
        ratios = []
        for _ in range(args.rounds):
            ratios.append(step_rate(ours, size, args.batch, args.steps, bf16) / step_rate(theirs, size, args.batch, args.steps, bf16))
        print(f"ThyroNet-X4 / torchvision-assembled throughput at {size} px: {statistics.median(ratios):.3f} "
              f"(median of {args.rounds} alternating rounds: {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
