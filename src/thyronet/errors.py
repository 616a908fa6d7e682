"""Errors a user can act on.

Every failure caused by input (a bad file, a wrong path, a bad option) is raised as a
:class:`ThyronetError`; the CLI prints it as one line and exits non-zero, never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ThyronetError(Exception):
    """An error caused by the user's input, printed without a traceback."""


class DataError(ThyronetError):
    """A problem with one input file; the message starts with the file's path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        # one line, whatever the library said: pydicom's decoders report one line per plugin
        self.problem = " ".join(line.strip() for line in problem.splitlines() if line.strip())
        super().__init__(f"{path}: {self.problem}")


class ImageTooLargeError(DataError):
    """An image whose declared size is over the pixel limit (refused before decoding)."""


@dataclass(frozen=True)
class DataIssue:
    """A problem found while reading a data source that was skipped (non-strict mode)."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"

    @classmethod
    def from_error(cls, error: DataError) -> DataIssue:
        return cls(error.path, error.problem)
