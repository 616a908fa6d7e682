"""How the ultrasound gate and the DICOM reader take pydicom's public test files (and those of the
pydicom-data package when it is installed): how many are answered, refused (by reason) and failed.

    python benchmarks/dicom_corpus.py [--list]

A file is read as `thyronet predict` reads it (header, then first and last frames). "Failed" is
anything that is not a one-line refusal: a traceback, or a problem without a known reason. The
second tally reads every image the gate refused as not ultrasound again with its Modality set to
US, so that the pixel reader meets the transfer syntaxes and encodings of the CT, MR and other
files (most of the corpus). Not a test: tests/test_dicom_corpus.py checks that nothing fails; the
figures go in docs/dicom-conformance.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from collections import Counter

import pydicom
import pydicom.data

from thyronet.data.corpus import FAILED, REFUSED, corpus_files, screen, screen_as_ultrasound
from thyronet.training.provenance import processor


def tally(outcomes) -> str:
    counts = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(outcome.reason for outcome in outcomes if outcome.status == REFUSED)
    total = max(len(outcomes), 1)
    by_reason = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return (f"{len(outcomes)} files: {counts['answered']} answered ({counts['answered'] / total:.1%}), {counts[REFUSED]} "
            f"refused ({counts[REFUSED] / total:.1%}: {by_reason or 'none'}), {counts[FAILED]} failed "
            f"({counts[FAILED] / total:.1%})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every file's outcome")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom warns about each odd header; the outcome is what counts
    sources = [*pydicom.data.get_testdata_files(), *pydicom.data.get_charset_files(), *pydicom.data.get_palette_files()]
    files = list(dict.fromkeys(corpus_files(sources)))
    started = time.perf_counter()
    outcomes = [screen(path) for path in files]
    relabelled = [again for outcome in outcomes if outcome.reason == "not ultrasound"
                  if (again := screen_as_ultrasound(outcome.path)) is not None]
    seconds = time.perf_counter() - started
    if args.list:
        for outcome in [*outcomes, *relabelled]:
            print(f"{outcome.status:<8} {outcome.reason:<24} {outcome.path.name}  {outcome.detail[:160]}")
    extra = "with pydicom-data" if importlib.util.find_spec("data_store") else "without pydicom-data (not installed)"
    print(f"pydicom {pydicom.__version__} test files, {extra}; {seconds:.1f} s on {processor()}")
    print(f"as sent:              {tally(outcomes)}")
    print(f"relabelled as US:     {tally(relabelled)} (the images refused as not ultrasound, read again as US)")
    for outcome in [*outcomes, *relabelled]:
        if outcome.status == FAILED:
            print(f"FAILED {outcome.path}: {outcome.reason}: {outcome.detail}")
    return 1 if any(outcome.status == FAILED for outcome in [*outcomes, *relabelled]) else 0


if __name__ == "__main__":
    sys.exit(main())
