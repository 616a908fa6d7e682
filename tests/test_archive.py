"""Prediction at archive scale: lazy enumeration, chunks written atomically, resume, bad files as
rows, workers and two DDP processes giving the rows of one."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet
import pytest

from thyronet.apps.cli import main
from thyronet.inference.archive import iter_inputs

THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")


@pytest.fixture(scope="module")
def archive(training_ddti, tmp_path_factory) -> Path:
    """A folder tree of the synthetic frames, with a broken image and a non-image file in it."""
    root = tmp_path_factory.mktemp("archive")
    for index, image in enumerate(sorted(training_ddti.glob("*.jpg"))):
        folder = root / f"site-{index % 3}" / f"day-{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    (root / "site-0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "site-1" / "notes.txt").write_text("not an input")
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_inputs_are_enumerated_lazily_in_a_fixed_order(archive):
    listing = iter_inputs([archive])
    assert isinstance(listing, Iterator)
    paths = list(listing)
    assert paths == sorted(paths, key=lambda p: p.relative_to(archive).parts)
    assert archive / "site-0" / "broken.png" in paths and archive / "site-1" / "notes.txt" in paths


def test_archive_rows_match_the_in_memory_prediction(tiny_run, archive, tmp_path):
    assert main(["predict", str(tiny_run), str(archive), "--out", str(tmp_path / "one.csv")]) == 1  # the broken files
    out = tmp_path / "archive"
    assert main(["predict", str(tiny_run), str(archive), "--out", str(out), "--chunk-size", "5", "--batch-size", "3",
                 "--workers", "2", "--parquet"]) == 1
    expected = {r["input"]: r for r in rows(tmp_path / "one.csv")}
    got = rows(out / "predictions.csv")
    assert len(got) == len(expected) == len(list(iter_inputs([archive])))
    for row in got:
        want = expected[row["input"]]
        if want["error"]:
            assert row["error"] == want["error"]
        else:
            assert float(row["probability"]) == pytest.approx(float(want["probability"]), abs=1e-6)
            if abs(float(want["probability"]) - float(want["threshold"])) > 1e-5:  # batching moves the last digits
                assert row["decision"] == want["decision"]
    assert len(list((out / "parts").glob("part-*.csv"))) == -(-len(got) // 5)
    table = pyarrow.parquet.read_table(out / "predictions.parquet")  # the same rows, numbers typed, empty cells null
    assert table.column("input").to_pylist() == [r["input"] for r in got]
    assert str(table.schema.field("probability").type) == "double" and str(table.schema.field("tirads_points").type) == "int64"
    parquet_probabilities = table.column("probability").to_pylist()
    assert [p is None for p in parquet_probabilities] == [not r["probability"] for r in got]
    assert [p for p in parquet_probabilities if p is not None] == [float(r["probability"]) for r in got if r["probability"]]


def test_a_resumed_job_gives_exactly_the_rows_of_an_uninterrupted_one(tiny_run, archive, tmp_path, capsys):
    out = tmp_path / "archive"
    command = ["predict", str(tiny_run), str(archive), "--out", str(out), "--chunk-size", "4"]
    main(command)
    complete = (out / "predictions.csv").read_text()
    for name in ("predictions.csv", "summary.json", "parts/part-00000001.csv", "parts/part-00000003.csv"):
        (out / name).unlink()  # as a job stopped before those chunks were written leaves it
    capsys.readouterr()
    assert main(command) == 2
    assert "add --resume" in capsys.readouterr().err
    assert main([*command[:-1], "5", "--resume"]) == 2
    assert "chunk_size is 4, not 5" in capsys.readouterr().err
    main([*command, "--resume"])
    assert (out / "predictions.csv").read_text() == complete


@pytest.mark.skipif(THYRONET is None, reason="the thyronet console script is not installed")
def test_two_ddp_processes_share_the_archive_and_give_the_rows_of_one(tiny_run, archive, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    single = tmp_path / "single"
    assert main(["predict", str(tiny_run), str(archive), "--out", str(single), "--chunk-size", "3"]) == 1
    double = tmp_path / "double"
    done = subprocess.run([THYRONET, "predict", str(tiny_run), str(archive), "--out", str(double), "--chunk-size", "3",
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]  # 1: the broken files are error rows
    assert done.stdout.splitlines()[-1].endswith("answered, 2 refused (1 not an image, 1 unreadable)"), done.stdout
    assert json.loads((double / "summary.json").read_text())["refused"] == {"not an image": 1, "unreadable": 1}
    assert (double / "predictions.csv").read_text() == (single / "predictions.csv").read_text()


def test_parquet_without_pyarrow_is_refused_before_the_job(tiny_run, archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the parquet extra were not installed
    assert main(["predict", str(tiny_run), str(archive), "--out", str(tmp_path / "a"), "--parquet"]) != 0
    assert "pip install 'thyronet[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "a" / "parts").exists()
