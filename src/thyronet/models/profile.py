"""Size and cost of a model: parameters, multiply-accumulates, CPU forward latency."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, in_chans: int = 3, size: int = 224) -> int:
    """Multiply-accumulates of one forward pass (FLOPs / 2 as counted by torch's FlopCounterMode)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_chans, size, size))
    return counter.get_total_flops() // 2


def measure_latency(model: nn.Module, in_chans: int = 3, size: int = 224, repeats: int = 5) -> float:
    """Median wall time in milliseconds of a batch-1 forward pass, after one warm-up."""
    model.eval()
    x = torch.randn(1, in_chans, size, size)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]
