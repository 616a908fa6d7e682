"""Why an input was not answered, in a few words, and the tally a job ends with.

Every refusal is a one-line :class:`~thyronet.errors.DataError` problem written where the file is
read (:mod:`thyronet.data.imageio`, :mod:`thyronet.data.dicom`) or judged (the out-of-distribution
refusal). :func:`refusal_reason` files each under a short reason by the words those messages
carry, so that a folder of a thousand files ends with "990 answered, 10 refused (7 not
ultrasound, 3 unreadable)" rather than a list to read. A problem no rule knows is "other", which
the DICOM corpus test treats as a failure: a new message gets its reason here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# (a fragment of the problem, its reason); the first fragment found decides, so the wrapped
# message of a file that is neither an image nor DICOM comes before what its DICOM reading said
REASONS: tuple[tuple[str, str], ...] = (
    ("nor a DICOM file", "unreadable"),
    ("thyronet reads ultrasound only", "not ultrasound"),
    ("no pixel data", "no pixel data"),
    ("malformed header", "malformed header"),
    ("unreadable DICOM", "unreadable"),
    ("cannot decode DICOM pixel data", "undecodable pixel data"),
    ("PALETTE COLOR lookup table", "undecodable pixel data"),
    ("requested but the file has", "no such frame"),
    ("not a readable image", "unreadable"),
    ("corrupt or truncated", "unreadable"),
    ("empty file", "empty file"),
    ("not an image or DICOM file", "not an image"),
    ("file not found", "not found"),
    ("not a regular file", "not found"),
    ("pixel limit", "too large"),
    ("decompression-bomb limit", "too large"),
    ("too small", "not an ultrasound frame"),
    ("too elongated", "not an ultrasound frame"),
    ("blank", "not an ultrasound frame"),
    ("refused: does not look like", "unlike the training images"),
    ("unreadable data set", "unreadable"),  # the DICOM node's C-STORE refusals
    ("is not a valid UID", "invalid UID"),
)
OTHER = "other"


def refusal_reason(problem: str) -> str:
    """The short reason for a refusal's one-line problem ('not ultrasound', 'unreadable', ...)."""
    for fragment, reason in REASONS:
        if fragment in problem:
            return reason
    return OTHER


@dataclass
class Tally:
    """How many inputs were answered, and how many refused for each reason."""

    answered: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def add(self, problem: str | None) -> None:
        """Count one input: answered when ``problem`` is None, else refused for its reason."""
        if problem is None:
            self.answered += 1
        else:
            self.refused[refusal_reason(problem)] += 1

    def line(self, answered: str = "answered") -> str:
        """'12 answered, 3 refused (2 not ultrasound, 1 unreadable)', the commonest reason first
        (``answered`` names the first count: the DICOM node has only kept its images yet)."""
        total = sum(self.refused.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.refused.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{self.answered} {answered}, {total} refused" + (f" ({reasons})" if reasons else "")


def tally_files(outcomes: Iterable[tuple[str, str | None]]) -> Tally:
    """The tally by file of (file, problem or None) rows: the frames of a multi-frame file are one
    file, answered when any of its frames is, else refused for its first frame's reason."""
    first_problem: dict[str, str | None] = {}
    for name, problem in outcomes:
        if name not in first_problem or (first_problem[name] is not None and problem is None):
            first_problem[name] = problem
    tally = Tally()
    for problem in first_problem.values():
        tally.add(problem)
    return tally
