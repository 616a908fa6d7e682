"""Prediction at archive scale: 10^5-10^7 images, one process or many (Lightning's ``Trainer.predict``).

The inputs are enumerated lazily and in a fixed order (each folder's entries sorted by name, the
tree walked depth first), never held in a list. Their positions are cut into chunks of
``chunk_size``; chunk ``c`` belongs to the data-loader worker ``c mod (processes x workers)``, so
the processes and their workers share the archive without talking to each other (the chunked
equivalent of a distributed sampler, which would need the whole list). A worker decodes its
chunks' images and hands them over in batches that never span two chunks; the LightningModule
predicts each batch; :class:`ChunkWriter` (a ``BasePredictionWriter``) collects a chunk's rows and
writes them as ``parts/part-NNNNNNNN.csv`` atomically once the chunk is complete. ``--resume``
skips the chunks whose part exists, so an interrupted job resumed gives exactly the rows of an
uninterrupted one, whatever the number of processes. A file that cannot be read is a row with its
error. Finally :func:`merge` writes ``predictions.csv`` (the parts in order) and ``summary.json``
(with the refusals by reason, :mod:`thyronet.data.refusals`),
and with ``parquet`` also ``predictions.parquet`` (typed columns, for a data warehouse; pyarrow,
the ``parquet`` extra).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from thyronet import __version__
from thyronet.data.imageio import looks_like_image, read_image, spacing_mm
from thyronet.data.refusals import Tally
from thyronet.errors import DataError, ThyronetError
from thyronet.inference.answers import Prediction, answer_result, columns
from thyronet.inference.backends import Backend
from thyronet.io import atomic_path, open_atomic, write_text_atomic

log = logging.getLogger(__name__)
MANIFEST = "archive.json"
FIELDS = list(columns())


def iter_inputs(roots: Sequence[str | Path]) -> Iterator[Path]:
    """Every input under ``roots`` in a fixed order: the files named, and every file in the folders
    named but hidden ones (a file that is no image becomes a row with that error, as in ``predict``'s
    other outputs)."""
    for root in map(Path, roots):
        if root.is_dir():
            yield from _walk(root)
        else:
            yield root


def _walk(folder: Path) -> Iterator[Path]:
    with os.scandir(folder) as listing:  # one folder's entries at a time, not the tree's
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)
        elif entry.is_file() and not entry.name.startswith("."):
            yield path


def count_inputs(roots: Sequence[str | Path]) -> int:
    return sum(1 for _ in iter_inputs(roots))


@dataclass
class Item:
    name: str
    frame: np.ndarray | None
    error: str | None = None
    spacing: tuple[float, float] | None = None  # a DICOM's calibration, for calipers in mm


@dataclass
class Batch:
    chunk: int
    items: list[Item]
    last: bool  # the chunk's final batch: its rows can be written


def _decode(path: Path) -> Item:
    if path.is_file() and not looks_like_image(path):
        return Item(str(path), None, "not an image or DICOM file")
    try:
        return Item(str(path), read_image(path), spacing=spacing_mm(path))
    except DataError as error:
        return Item(str(path), None, error.problem)


class ArchiveInputs(IterableDataset):
    """The chunks of one process's share of the inputs, decoded by the data-loader workers."""

    def __init__(self, roots: Sequence[str], chunk_size: int, batch_size: int, done: set[int], rank: int, world: int) -> None:
        self.roots, self.chunk_size, self.batch_size = list(roots), chunk_size, batch_size
        self.done, self.rank, self.world = done, rank, world

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        slot, slots = self.rank * workers + worker_id, self.world * workers
        items: list[Item] = []
        current: int | None = None  # the chunk whose batches are being sent
        for index, path in enumerate(iter_inputs(self.roots)):
            chunk = index // self.chunk_size
            if chunk % slots != slot or chunk in self.done:
                continue
            current = chunk
            items.append(_decode(path))
            if (index + 1) % self.chunk_size == 0:
                yield Batch(chunk, items, True)
                items, current = [], None
            elif len(items) == self.batch_size:
                yield Batch(chunk, items, False)
                items = []
        if current is not None:  # the archive's last, partial chunk
            yield Batch(current, items, True)


def _keep(batch: Batch) -> Batch:
    return batch  # batches are made by the dataset; images of many sizes are not stacked


def _networks(predictor: Any) -> list[nn.Module]:
    """The torch networks behind a predictor (an ensemble's members', the segmenters'), so that
    Lightning puts them on the process's device."""
    found: list[nn.Module] = []
    for member in [predictor, *getattr(predictor, "members", [])]:
        for network in (getattr(member, "model", None), getattr(getattr(member, "segmenter", None), "model", None)):
            if isinstance(network, nn.Module) and all(network is not f for f in found):
                found.append(network)
    return found


class ArchiveModule(L.LightningModule):
    def __init__(self, backend: Backend, refuse_ood: bool = False) -> None:
        super().__init__()
        self.backend, self.refuse_ood = backend, refuse_ood
        self.networks = nn.ModuleList(_networks(backend.predictor))

    def predict_step(self, batch: Batch, batch_idx: int = 0) -> tuple[int, list[dict[str, Any]], bool]:
        readable = [item for item in batch.items if item.frame is not None]
        try:
            results = self.backend.predictor.predict_batch([item.frame for item in readable]) if readable else []
        except DataError:  # one frame the model cannot take: answer them one by one
            results = []
        rows = []
        answered = iter(results)
        for item in batch.items:
            if item.frame is None:
                rows.append(Prediction(item.name, error=item.error).row())
                continue
            try:
                result = next(answered, None) or self.backend.predict_frame(item.frame)
                answer = answer_result(self.backend, result, item.name, refuse_ood=self.refuse_ood, spacing=item.spacing)
                rows.append(answer.prediction.row())
            except DataError as error:
                rows.append(Prediction(item.name, error=error.problem).row())
        return batch.chunk, rows, batch.last


def part_path(out: Path, chunk: int) -> Path:
    return out / "parts" / f"part-{chunk:08d}.csv"


class ChunkWriter(BasePredictionWriter):
    """Writes each chunk's rows as one CSV part, atomically, once its last batch is predicted."""

    def __init__(self, out: Path) -> None:
        super().__init__(write_interval="batch")
        self.out = out
        self.pending: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        chunk, rows, last = prediction
        self.pending[chunk] += rows
        if last:
            with open_atomic(part_path(self.out, chunk)) as handle:
                writer = csv.DictWriter(handle, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(self.pending.pop(chunk))


class Progress(L.Callback):
    """This process's images, rate and time left: a bar on a terminal, else a line every ``every`` images."""

    def __init__(self, every: int) -> None:
        self.expected, self.every, self.done, self.bar, self.start = 0, every, 0, None, time.perf_counter()

    def on_predict_start(self, trainer, pl_module) -> None:
        self.start, self.expected = time.perf_counter(), trainer.datamodule.expected
        if sys.stderr.isatty() and trainer.global_rank == 0:
            from tqdm import tqdm

            self.bar = tqdm(total=self.expected, unit="img", desc="predict", dynamic_ncols=True)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        before, self.done = self.done, self.done + len(batch.items)
        if self.bar is not None:
            self.bar.update(len(batch.items))
        elif self.done // self.every > before // self.every:
            rate = self.done / max(1e-9, time.perf_counter() - self.start)
            left = max(0, self.expected - self.done) / max(rate, 1e-9)
            log.info("rank %d: %d of about %d images, %.1f img/s, %.0f s left", trainer.global_rank, self.done,
                     self.expected, rate, left)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class ArchiveJob:
    """What an archive prediction was asked to do; stored as ``archive.json`` so ``--resume`` continues
    the same job."""

    model: str
    inputs: list[str]
    chunk_size: int = 1000
    refuse_ood: bool = False

    def check_resumable(self, out: Path) -> None:
        stored = json.loads((out / MANIFEST).read_text())
        for key in ("model", "inputs", "chunk_size", "refuse_ood"):
            if stored.get(key) != getattr(self, key):
                raise ThyronetError(f"{out}: --resume continues the job stored in {MANIFEST}, whose {key} is "
                                    f"{stored.get(key)!r}, not {getattr(self, key)!r}; use a new --out folder")


class ArchiveData(L.LightningDataModule):
    """The job's inputs for this process: checked, counted and shared out once the processes are up
    (their ranks are known only then)."""

    def __init__(self, job: ArchiveJob, out: Path, resume: bool, batch_size: int, workers: int) -> None:
        super().__init__()
        self.job, self.out, self.resume, self.batch_size, self.workers = job, out, resume, batch_size, workers
        self.total = self.expected = 0
        self.done: set[int] = set()

    def setup(self, stage: str) -> None:
        out, job = self.out, self.job
        if (out / MANIFEST).exists():  # every process judges the folder as it was before the job started
            if not self.resume:
                raise ThyronetError(f"{out}: holds an archive prediction already; add --resume to continue it, or give a new folder")
            job.check_resumable(out)
        elif self.resume:
            raise ThyronetError(f"{out}: nothing to resume (no {MANIFEST})")
        self.total = count_inputs(job.inputs)
        if self.total == 0:
            raise ThyronetError(f"no image or DICOM files found in {', '.join(job.inputs)}")
        self.done = {int(p.stem.split("-")[1]) for p in (out / "parts").glob("part-*.csv")} if self.resume else set()
        left = self.total - sum(min(job.chunk_size, self.total - c * job.chunk_size) for c in self.done)
        self.expected = left // self.trainer.world_size
        self.trainer.strategy.barrier()
        if self.trainer.global_rank == 0 and not (out / MANIFEST).exists():
            (out / "parts").mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / MANIFEST, json.dumps({**dataclasses.asdict(job), "thyronet": __version__}, indent=2))
        self.trainer.strategy.barrier()

    def predict_dataloader(self) -> DataLoader:
        inputs = ArchiveInputs(self.job.inputs, self.job.chunk_size, self.batch_size, self.done,
                               self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(inputs, batch_size=None, num_workers=self.workers, collate_fn=_keep)


def predict_archive(backend: Backend, job: ArchiveJob, out: Path, *, resume: bool = False, batch_size: int = 32,
                    workers: int = 0, trainer_options: dict[str, Any] | None = None, log_every: int = 1000,
                    parquet: bool = False) -> dict[str, Any]:
    """Predict every input of ``job`` into ``out`` (parts, then the merged CSV, Parquet too when
    asked, and the summary). Returns the summary in the first process and ``{}`` in the others."""
    out = Path(out)
    if parquet:
        _pyarrow()  # before the job, not after it
    options = {"accelerator": "cpu", "devices": 1, **(trainer_options or {})}
    trainer = L.Trainer(callbacks=[ChunkWriter(out), Progress(log_every)], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False, **options)
    data = ArchiveData(job, out, resume, batch_size, workers)
    started = time.perf_counter()
    trainer.predict(ArchiveModule(backend, job.refuse_ood), datamodule=data, return_predictions=False)
    trainer.strategy.barrier()  # every process's parts are written before the merge
    if trainer.global_rank != 0:
        return {}
    chunks = -(-data.total // job.chunk_size)
    summary = merge(out, chunks, data.total, time.perf_counter() - started, trainer.world_size, workers)
    if parquet:
        write_parquet(out / "predictions.csv", out / "predictions.parquet")
    return summary


def merge(out: Path, chunks: int, total: int, seconds: float, processes: int, workers: int) -> dict[str, Any]:
    """``predictions.csv``, the parts in order streamed into one file, and ``summary.json``."""
    missing = [c for c in range(chunks) if not part_path(out, c).exists()]
    if missing:
        raise ThyronetError(f"{out}: {len(missing)} chunk(s) were not written (first: {missing[0]}); run again with --resume")
    counts = {"images": 0, "predicted": 0, "errors": 0, "flagged_ood": 0, "malignant": 0, "benign": 0}
    tally = Tally()  # an archive row is one file (its first frame)
    with open_atomic(out / "predictions.csv") as merged:
        writer = csv.DictWriter(merged, fieldnames=FIELDS)
        writer.writeheader()
        for chunk in range(chunks):
            with part_path(out, chunk).open(newline="") as handle:
                for row in csv.DictReader(handle):
                    writer.writerow(row)
                    counts["images"] += 1
                    tally.add(row["error"] or None)
                    if row["error"]:
                        counts["errors"] += 1
                    else:
                        counts["predicted"] += 1
                        counts[row["decision"]] = counts.get(row["decision"], 0) + 1
                    if row["ood_score"] and float(row["ood_score"]) > 1:
                        counts["flagged_ood"] += 1
    summary = {**counts, "refused": dict(tally.refused), "tally": tally.line(),
               "inputs_listed": total, "chunks": chunks, "seconds_this_run": round(seconds, 1),
               "processes": processes, "workers_per_process": workers}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise ThyronetError("--parquet needs pyarrow: pip install 'thyronet[parquet]'") from None
    return pyarrow


# the flat row's columns as Parquet columns: numbers typed, the rest text; an empty CSV cell is null
ARROW_TYPES = {float: "float64", int: "int64"}


def write_parquet(csv_path: Path, parquet_path: Path) -> None:
    """The merged CSV as one Parquet file, streamed block by block (memory stays flat), written atomically."""
    pa = _pyarrow()
    schema = pa.schema([(name, ARROW_TYPES.get(kind, "string")) for name, kind in columns().items()])
    convert = pa.csv.ConvertOptions(column_types=schema, strings_can_be_null=True)
    reader = pa.csv.open_csv(csv_path, convert_options=convert)
    with atomic_path(parquet_path) as tmp, pa.parquet.ParquetWriter(tmp, reader.schema) as writer:
        for block in reader:
            writer.write_batch(block)
