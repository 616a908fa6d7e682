"""Archive prediction: images/s of `thyronet predict` one way and another, its memory against the
archive's size, and an interrupted job resumed against an uninterrupted one.

    python benchmarks/archive_predict.py MODEL [--source ../shared/data/ddti] [--images 2000]
                                        [--rss-sizes 1000 20000] [--work DIR]

Builds archives of symbolic links under --work (never copies data): --images links to the
source's frames (DDTI-like images) in folders of 500, and for the memory figures trees of links to
one small synthetic frame. Each run is a fresh `thyronet predict` process, timed whole (start-up
and model loading included) with its peak resident memory (GNU time's; for DDP the first process's):
the in-memory path (`--out FILE.csv`, every input listed first) as the baseline, the archive path
in one process, with `--workers 2`, and as two DDP processes (`--devices 2 --strategy ddp`,
one thread each). Not a test: the figures go in docs/results.md with the processor printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from thyronet.training.provenance import processor

# the console script, not `python -c`: Lightning's DDP launcher starts the other processes by
# running the same command line again
THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")


def link_tree(root: Path, targets: list[Path], count: int, per_folder: int = 500) -> Path:
    root.mkdir(parents=True)
    for index in range(count):
        folder = root / f"{index // per_folder:04d}"
        folder.mkdir(exist_ok=True)
        target = targets[index % len(targets)]
        (folder / f"{index:07d}{target.suffix}").symlink_to(target.resolve())
    return root


def run(arguments: list[str], threads: int | None = None, interrupt_after: float | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak MiB, exit code) of one `thyronet` process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-f", "PEAK_KIB %M", THYRONET, *arguments], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    if interrupt_after is not None:
        try:
            process.wait(timeout=interrupt_after)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, to every process of the job
    _, err = process.communicate()
    wall = time.perf_counter() - start
    peak = next((int(line.split()[1]) / 1024 for line in err.splitlines() if line.startswith("PEAK_KIB")), float("nan"))
    if process.returncode not in (0, 1, 130) and interrupt_after is None:
        sys.exit(f"thyronet {' '.join(arguments)} failed:\n{err[-3000:]}")
    return wall, peak, process.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="archive-bench-"))
    frames = sorted(p for p in args.source.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    archive = link_tree(work / "archive", frames, args.images)
    print(f"processor: {processor()}; {os.cpu_count()} cores; model {args.model}; {args.images} links to "
          f"{len(frames)} frames of {args.source}\n")
    print("| path | wall s | images/s | peak MiB |\n| --- | ---: | ---: | ---: |")
    modes = {
        "in memory (`--out FILE.csv`), the baseline": ([str(work / "memory.csv")], [], None),
        "archive, 1 process": ([str(work / "one")], [], None),
        "archive, 1 process, `--workers 2`": ([str(work / "workers")], ["--workers", "2"], None),
        "archive, 2 DDP processes, 1 thread each": ([str(work / "ddp")], ["--devices", "2", "--strategy", "ddp"], 1),
    }
    for name, (out, extra, threads) in modes.items():
        wall, peak, _ = run(["predict", args.model, str(archive), "--out", *out, *extra], threads)
        print(f"| {name} | {wall:.1f} | {args.images / wall:.1f} | {peak:.0f} |", flush=True)

    small = work / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128), dtype=np.uint8)).save(small)
    print("\n| inputs (links to one 128x96 frame) | wall s | peak MiB |\n| --- | ---: | ---: |")
    for size in args.rss_sizes:
        tree = link_tree(work / f"small-{size}", [small], size)
        wall, peak, _ = run(["predict", args.model, str(tree), "--out", str(work / f"rss-{size}")])
        print(f"| {size} | {wall:.1f} | {peak:.0f} |", flush=True)

    uninterrupted, _, _ = run(["predict", args.model, str(archive), "--out", str(work / "full"), "--chunk-size", "200"])
    run(["predict", args.model, str(archive), "--out", str(work / "resumed"), "--chunk-size", "200"],
        interrupt_after=uninterrupted * 0.5)
    parts = len(list((work / "resumed" / "parts").glob("part-*.csv")))
    run(["predict", args.model, str(archive), "--out", str(work / "resumed"), "--chunk-size", "200", "--resume"])
    same = (work / "full" / "predictions.csv").read_bytes() == (work / "resumed" / "predictions.csv").read_bytes()
    print(f"\ninterrupted (Ctrl-C) at half its time with {parts} of {-(-args.images // 200)} chunks written, then --resume: "
          f"predictions.csv {'identical to' if same else 'DIFFERENT from'} the uninterrupted job's")
    if not args.work:
        shutil.rmtree(work)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
