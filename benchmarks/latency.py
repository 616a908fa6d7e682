"""Per-image latency of preprocess + predict (torch eager, onnxruntime), of Grad-CAM and of
finding the nodule (the segmenter a region-of-interest run carries).

    python benchmarks/latency.py RUN_OR_CKPT [--images DIR] [--repeats 30] [--threads 2]

Prints medians and 95th percentiles in milliseconds, against the 60 ms target for a single
image (50 ms for segmentation) on this CPU, and the processor. Not a test: figures go in the
notes and docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from thyronet.data.imageio import read_image
from thyronet.errors import ThyronetError
from thyronet.inference.answers import predict_image
from thyronet.inference.backends import Backend, load_backend
from thyronet.inference.cam import CamExplainer
from thyronet.inference.checkpoint import read_checkpoint
from thyronet.inference.onnx import export_onnx
from thyronet.inference.segmenter import Segmenter
from thyronet.training.provenance import processor

TARGET_MS = 60.0
SEGMENT_TARGET_MS = 50.0


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(name: str, times: list[float]) -> None:
    p95 = float(np.percentile(times, 95))
    print(f"{name:<44} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")


def segmenter_latency(segmenter: Segmenter, images: list[np.ndarray], args: argparse.Namespace) -> int:
    """A segmentation run alone: preprocess, U-Net, mask carried back onto the frame."""
    size = segmenter.config.data.preprocess.size
    print(f"segmenter {segmenter.config.model.name}, input 1x{size}x{size}, {args.threads} thread(s), processor: {processor()}")
    cycle = iter(range(10**9))
    times = timed(lambda: segmenter(images[next(cycle) % len(images)]), args.repeats)
    report("find the nodule (preprocess, U-Net, mask on frame)", times)
    median = statistics.median(times)
    print(f"target: segmentation of one image under {SEGMENT_TARGET_MS:.0f} ms -> median {median:.1f} ms "
          f"({'met' if median < SEGMENT_TARGET_MS else 'NOT met'})")
    return 0


def onnx_latency(backend: Backend, size: int, threads: int, repeats: int, next_image: Callable[[], np.ndarray]) -> list[float] | None:
    """Per-image times of preparing and predicting through onnxruntime, or None (said why) when the
    model cannot be exported."""
    with tempfile.TemporaryDirectory() as tmp:
        data = backend.config.data
        try:
            path = export_onnx(backend.loaded.model, Path(tmp) / "m.onnx", data.in_chans, size, backend.metadata())
        except ThyronetError as error:
            print(f"prepare + predict, onnxruntime: not measured ({error})")
            return None
        onnx_backend = load_backend(path, threads=threads)
        return timed(lambda: predict_image(onnx_backend, next_image(), "x"), repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", default="../shared/data/ddti", help="folder of JPEGs to cycle through")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(Path(args.images).glob("*.jpg"))[:20]
    if not paths:
        print(f"no JPEGs in {args.images}", file=sys.stderr)
        return 2
    images = [read_image(p) for p in paths]
    if read_checkpoint(args.checkpoint)[0].task == "segment":
        return segmenter_latency(Segmenter.load(args.checkpoint), images, args)
    backend = load_backend(args.checkpoint)
    size = backend.config.data.preprocess.size
    print(f"model {backend.name}, input {backend.config.data.in_chans}x{size}x{size}, {args.threads} thread(s), "
          f"{len(images)} DDTI images cycled, {args.repeats} repeats")
    cycle = iter(range(10**9))

    def next_image() -> np.ndarray:
        return images[next(cycle) % len(images)]

    print(f"processor: {processor()}")
    report("decode JPEG (560x360)", timed(lambda: read_image(paths[0]), args.repeats))
    segmenter = backend.loaded.segmenter
    if segmenter is not None:
        segment = timed(lambda: segmenter(next_image()), args.repeats)
        report("find the nodule (preprocess, U-Net, mask on frame)", segment)
        print(f"target: segmentation of one image under {SEGMENT_TARGET_MS:.0f} ms -> median {statistics.median(segment):.1f} ms "
              f"({'met' if statistics.median(segment) < SEGMENT_TARGET_MS else 'NOT met'})")
    report("prepare the model input (incl. finding the nodule)", timed(lambda: backend.prepare(next_image()), args.repeats))
    eager = timed(lambda: predict_image(backend, next_image(), "x"), args.repeats)
    report("prepare + predict, torch eager", eager)
    best = statistics.median(eager)
    onnx = onnx_latency(backend, size, args.threads, args.repeats, next_image) if backend.config.data.roi.mode == "none" else None
    if onnx:  # ONNX exports carry no segmenter: region models are timed eagerly only
        report("prepare + predict, onnxruntime", onnx)
        best = min(best, statistics.median(onnx))
    explainer = CamExplainer(backend, "gradcam")
    report("Grad-CAM (prepared input)", timed(lambda: explainer(backend.to_tensor(backend.prepare(next_image()).image)),
                                              args.repeats))
    print(f"target: single-image prediction under {TARGET_MS:.0f} ms -> best median {best:.1f} ms "
          f"({'met' if best < TARGET_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
