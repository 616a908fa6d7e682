"""Gradients at initialisation: their size, and how far bf16 autocast bends them, per model.

    python benchmarks/init_gradients.py [--models thyronet_x4 resnet18 ...] [--size 128] [--batch 8]

For each registry classifier, with and without `zero_init_residual`, one batch of random 1-channel
images goes forward and backward twice in fp32 (to show the run-to-run noise floor) and once under
CPU bf16 autocast. Prints the global norm of the convolution weights' gradients and the cosine
similarity between the fp32 and bf16 gradients (1: the same direction). This is why the project
trains the bottleneck models with zero-initialised residual branches: without, their gradients at
initialisation are two orders of magnitude larger than ResNet18's and bf16 reduces them to noise.
Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from thyronet.models import create_model
from thyronet.training.provenance import processor

DEFAULT_MODELS = ["resnet18", "baseline", "baseline_block", "baseline_bottleneck", "thyronet_x4"]


def conv_gradients(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> torch.Tensor:
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout mask in every pass
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(images)
    F.cross_entropy(logits.float(), labels).backward()
    # in float64: a cosine over millions of float32 products drifts visibly above 1
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None and p.dim() == 4]).double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(f"processor: {processor()}, torch {torch.__version__}, "
          f"{args.batch} images of {args.size} px, train mode")
    print(f"{'model':22s} {'zero-init':>9s} {'|grad| fp32':>12s} {'cos fp32/fp32':>14s} {'cos fp32/bf16':>14s}")
    for name in args.models:
        for zero_init in (False, True):
            torch.manual_seed(0)
            model = create_model(name, num_classes=2, in_chans=1, zero_init_residual=zero_init).train()
            images, labels = torch.randn(args.batch, 1, args.size, args.size), torch.randint(0, 2, (args.batch,))
            first, again, bf16 = (conv_gradients(model, images, labels, b) for b in (False, False, True))
            print(f"{name:22s} {str(zero_init):>9s} {first.norm():12.1f} {F.cosine_similarity(first, again, 0):14.3f} "
                  f"{F.cosine_similarity(first, bf16, 0):14.3f}", flush=True)


if __name__ == "__main__":
    main()
