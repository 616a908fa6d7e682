"""How the ultrasound gate and the DICOM reader take pydicom's public test files (and those of the
pydicom-data package when it is installed): how many are answered, refused (by reason) and failed.

    python benchmarks/dicom_corpus.py [--list] [--model RUN]

A file is read as `thyronet predict` reads it (header, then first and last frames). "Failed" is
anything that is not a one-line refusal: a traceback, or a problem without a known reason. The
second tally reads every image the gate refused as not ultrasound again with its Modality set to
US, so that the pixel reader meets the transfer syntaxes and encodings of the CT, MR and other
files (most of the corpus). With --model, every answered file's SR and SEG are written as
`predict --dicom-out` writes them and checked with dciodvfy (Debian's dicom3tools) when it is
installed: the writer's tally. Not a test: tests/test_dicom_corpus.py checks that nothing fails; the
figures go in docs/dicom-conformance.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pydicom.data

from thyronet.data.corpus import ANSWERED, FAILED, REFUSED, corpus_files, screen, screen_as_ultrasound
from thyronet.errors import DataError
from thyronet.training.provenance import processor


def tally(outcomes) -> str:
    counts = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(outcome.reason for outcome in outcomes if outcome.status == REFUSED)
    total = max(len(outcomes), 1)
    by_reason = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return (f"{len(outcomes)} files: {counts['answered']} answered ({counts['answered'] / total:.1%}), {counts[REFUSED]} "
            f"refused ({counts[REFUSED] / total:.1%}: {by_reason or 'none'}), {counts[FAILED]} failed "
            f"({counts[FAILED] / total:.1%})")


def dciodvfy(path: Path) -> tuple[int, int]:
    """(errors, warnings) dciodvfy reports for a written object; (0, 0) without dciodvfy."""
    if not shutil.which("dciodvfy"):
        return 0, 0
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).splitlines()
    return sum(line.startswith("Error") for line in lines), sum(line.startswith("Warning") for line in lines)


def write_results(model: str, answered: list[Path]) -> list[str]:
    """Write each answered file's SR and SEG; one line per file and the writer's tally."""
    from thyronet.apps.dicom_out import write_dicom_results
    from thyronet.data.imageio import read_image
    from thyronet.inference.answers import predict_image
    from thyronet.inference.backends import load_backend

    backend, lines, counts = load_backend(model), [], Counter()
    with tempfile.TemporaryDirectory(prefix="thyronet-corpus-") as folder:
        for path in answered:
            try:
                written = write_dicom_results(path, predict_image(backend, read_image(path), str(path)), Path(folder),
                                              backend.name, name=path.stem)
            except DataError as error:
                counts["refused"] += 1
                lines.append(f"writer refused {path.name}: {error.problem}")
                continue
            except Exception as error:  # what the measurement is for
                counts[FAILED] += 1
                lines.append(f"writer FAILED {path.name}: {error.__class__.__name__}: {' '.join(str(error).split())}")
                continue
            counts["written"] += 1
            for result in written:
                errors, warned = dciodvfy(result)
                counts["objects"], counts["dciodvfy errors"], counts["dciodvfy warnings"] = (
                    counts["objects"] + 1, counts["dciodvfy errors"] + errors, counts["dciodvfy warnings"] + warned)
                if errors:
                    lines.append(f"dciodvfy: {errors} error(s) in {result.name.split('.', 1)[-1]} of {path.name}")
    lines.append(f"SR/SEG writer:        {len(answered)} answered files: {counts['written']} with results ({counts['objects']} "
                 f"objects; dciodvfy {counts['dciodvfy errors']} errors, {counts['dciodvfy warnings']} warnings), "
                 f"{counts['refused']} refused in one line, {counts[FAILED]} failed")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every file's outcome")
    parser.add_argument("--model", help="a run folder: also write and check every answered file's SR and SEG")
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
    writer = write_results(args.model, [o.path for o in outcomes if o.status == ANSWERED]) if args.model else []
    print("\n".join(writer))
    failed = any(outcome.status == FAILED for outcome in [*outcomes, *relabelled]) or any("FAILED" in line for line in writer)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
