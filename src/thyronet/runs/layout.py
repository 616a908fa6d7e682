"""Where a run folder and a cross-validation folder keep their files: the one place that knows.

A run folder (``thyronet train``)::

    config.yaml  split.json  provenance.json  results.json  metrics.csv
    checkpoints/best.ckpt  checkpoints/last.ckpt
    predictions_val.csv  predictions_test.csv  segments_{val,test}.csv (segmenters)
    segmenter/   (a run folder: the segmenter a predicted region of interest trained)

A CV folder (``thyronet cv``)::

    config.yaml  folds.json  cv_results.json  ensemble.json  fold-0/ ... fold-<k-1>/ (run folders)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run."""

    root: Path

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder:
        """The run folder a checkpoint file lives in (``RUN/checkpoints/x.ckpt``)."""
        return cls(Path(checkpoint).parent.parent)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def segmenter(self) -> RunFolder:
        return RunFolder(self.root / "segmenter")

    def predictions(self, side: str) -> Path:
        return self.root / f"predictions_{side}.csv"

    def segments(self, side: str) -> Path:
        return self.root / f"segments_{side}.csv"

    def is_run(self) -> bool:
        return self.config.is_file() and self.split.is_file()


@dataclass(frozen=True)
class CVFolder:
    """The files of one cross-validation: its plan, its folds (run folders), its aggregate."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "folds.json"

    @property
    def results(self) -> Path:
        return self.root / "cv_results.json"

    @property
    def ensemble(self) -> Path:
        return self.root / "ensemble.json"

    def fold(self, index: int) -> RunFolder:
        return RunFolder(self.root / f"fold-{index}")

    def folds(self) -> list[RunFolder]:
        """The fold folders present, in fold order."""
        found = [p for p in self.root.glob("fold-*") if p.is_dir() and p.name[5:].isdigit()]
        return [RunFolder(p) for p in sorted(found, key=lambda p: int(p.name[5:]))]

    def is_cv(self) -> bool:
        return self.plan.is_file()
