"""Screening a corpus of files as ``thyronet predict`` reads them: each is answered, refused with
its one-line reason, or *failed* (anything but a clear refusal: an exception other than
:class:`~thyronet.errors.DataError`, or a problem :mod:`thyronet.data.refusals` has no reason
for). ``benchmarks/dicom_corpus.py`` runs it over pydicom's test files and the test suite checks
that none fails.

Most public DICOM test files are CT, MR or RT objects, which the ultrasound gate refuses before
any pixel is decoded; :func:`screen_as_ultrasound` reads each such image again with its Modality
set to US, so that the pixel reader meets every transfer syntax and encoding those files carry.
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from thyronet.data.imageio import probe_image, read_image
from thyronet.data.refusals import OTHER, refusal_reason
from thyronet.errors import DataError

ANSWERED, REFUSED, FAILED = "answered", "refused", "failed"


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str  # ANSWERED, REFUSED or FAILED
    reason: str = ""  # a refusal's reason ('not ultrasound', ...); for a failure, the exception's type
    detail: str = ""  # the one-line problem, or the traceback's last line


def corpus_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files named and those inside the folders named (as ``predict`` lists a folder), sorted."""
    for path in sorted(map(Path, paths)):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def screen(path: Path) -> Outcome:
    """Read ``path`` as ``predict`` does: the header first, then the first and last frames."""
    try:
        frames = probe_image(path) or 1
        for frame in sorted({0, frames - 1}) if frames > 1 else [None]:
            read_image(path, frame)
    except DataError as error:
        reason = refusal_reason(error.problem)
        return Outcome(path, FAILED if reason == OTHER else REFUSED, reason, error.problem)
    except Exception as error:  # what the corpus is for: anything that is not a clear refusal
        return Outcome(path, FAILED, error.__class__.__name__, traceback.format_exc(limit=-1).strip().splitlines()[-1])
    return Outcome(path, ANSWERED)


def screen_as_ultrasound(path: Path) -> Outcome | None:
    """Screen an image object the gate refused as not ultrasound again, with its Modality set to
    US (written to a temporary copy); None for an object without pixel data or one pydicom cannot
    write back."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True)
        if "PixelData" not in dataset:
            return None
        dataset.Modality = "US"
        with tempfile.TemporaryDirectory(prefix="thyronet-corpus-") as folder:
            copy = Path(folder) / path.name
            dataset.save_as(copy)
            outcome = screen(copy)
    except Exception:  # a header pydicom reads but cannot write back is no test of the reader
        return None
    return Outcome(path, outcome.status, outcome.reason, outcome.detail)
