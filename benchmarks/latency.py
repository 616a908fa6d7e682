"""Per-image latency of preprocess + predict (torch eager, onnxruntime) and of Grad-CAM.

    python benchmarks/latency.py RUN_OR_CKPT [--images DIR] [--repeats 30] [--threads 2]

Prints medians and 95th percentiles in milliseconds, against the 60 ms target for a single
image on this CPU. Not a test: figures go in the notes and docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from thyronet.clinical.backends import load_backend
from thyronet.clinical.explain import CamExplainer
from thyronet.clinical.export import export_onnx
from thyronet.clinical.predict import predict_image
from thyronet.data.imageio import read_image

TARGET_MS = 60.0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", default="../shared/data/ddti", help="folder of JPEGs to cycle through")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = load_backend(args.checkpoint)
    paths = sorted(Path(args.images).glob("*.jpg"))[:20]
    if not paths:
        print(f"no JPEGs in {args.images}", file=sys.stderr)
        return 2
    images = [read_image(p) for p in paths]
    size = backend.config.data.preprocess.size
    print(f"model {backend.name}, input {backend.config.data.in_chans}x{size}x{size}, {args.threads} thread(s), "
          f"{len(images)} DDTI images cycled, {args.repeats} repeats")
    cycle = iter(range(10**9))

    def next_image() -> np.ndarray:
        return images[next(cycle) % len(images)]

    report("decode JPEG (560x360)", timed(lambda: read_image(paths[0]), args.repeats))
    report("preprocess (scan crop, resize, normalise)", timed(lambda: backend.prepare(next_image()), args.repeats))
    eager = timed(lambda: predict_image(backend, next_image(), "x"), args.repeats)
    report("preprocess + predict, torch eager", eager)
    with tempfile.TemporaryDirectory() as tmp:
        data = backend.config.data
        onnx_path = export_onnx(backend.loaded.model, Path(tmp) / "m.onnx", data.in_chans, size, backend.metadata())
        onnx_backend = load_backend(onnx_path)
        onnx_backend.onnx.session.get_session_options().intra_op_num_threads = args.threads
        onnx = timed(lambda: predict_image(onnx_backend, next_image(), "x"), args.repeats)
        report("preprocess + predict, onnxruntime", onnx)
    explainer = CamExplainer(backend, "gradcam")
    report("Grad-CAM (preprocessed input)", timed(lambda: explainer(backend.prepare(next_image())[1]), args.repeats))
    best = min(statistics.median(eager), statistics.median(onnx))
    print(f"target: single-image prediction under {TARGET_MS:.0f} ms -> best median {best:.1f} ms "
          f"({'met' if best < TARGET_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
