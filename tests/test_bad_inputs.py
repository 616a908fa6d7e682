"""Twenty kinds of awkward file through `thyronet predict` (each alone, and all in one folder with
good images) and through the web API: a clear error naming the file for the broken ones, a
prediction for the odd but valid ones, never a traceback, never a lost good result."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from badfiles import corpus, write_corpus
from service import authorised_client
from synthetic import make_dicom, make_us_dicom, ultrasound_image
from thyronet.apps.cli import main
from thyronet.apps.serve.app import ServiceSettings, create_app


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "inputs"
    files = write_corpus(folder)
    return folder, files


def test_the_corpus_covers_at_least_eighteen_kinds(bad_folder):
    _, files = bad_folder
    assert len(files) >= 18 and len({f.name for f in files}) == len(files)


def _check_row(row, item) -> None:
    if item.problem is None:
        assert row["error"] in (None, ""), f"{item.name}: {row['error']}"
        assert 0 <= row["probability"] <= 1 and row["decision"] in ("benign", "malignant")
    else:
        assert item.problem in row["error"], f"{item.name}: {row['error']}"
        assert row["probability"] is None


def test_each_file_alone_on_the_command_line(tiny_run, bad_folder, tmp_path, capsys):
    folder, files = bad_folder
    for item in files:
        out = tmp_path / f"{item.name}.json"
        code = main(["predict", str(tiny_run), str(folder / item.name), "--out", str(out)])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        assert code == (0 if item.problem is None else 1), item.name
        rows = json.loads(out.read_text())
        assert len(rows) == 1 and rows[0]["input"].endswith(item.name)
        _check_row(rows[0], item)
        if item.problem is not None:
            printed = captured.out + captured.err  # the table names the file and says what is wrong
            assert item.name in printed and item.problem in printed


def test_one_folder_mixing_every_kind_with_good_images(tiny_run, bad_folder, tmp_path, capsys):
    folder, files = bad_folder
    good = ["good_a.png", "good_b.jpg"]
    for seed, name in enumerate(good):
        Image.fromarray(ultrasound_image(seed, bool(seed))).save(folder / name)
    out = tmp_path / "all.json"
    try:
        assert main(["predict", str(tiny_run), str(folder), "--out", str(out)]) == 1
    finally:
        for name in good:
            (folder / name).unlink()
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    # the last line tallies the folder by reason (the noise images are answered, with a warning)
    assert printed.out.splitlines()[-1] == ("11 answered, 11 refused (5 unreadable, 3 not an ultrasound frame, "
                                            "1 empty file, 1 no pixel data, 1 too large)")
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in json.loads(out.read_text())}
    assert set(rows) == {f.name for f in files} | set(good)
    for item in files:
        _check_row(rows[item.name], item)
    for name in good:
        assert rows[name]["error"] in (None, "") and 0 <= rows[name]["probability"] <= 1


def _expected_status(problem: str | None) -> set[int]:
    if problem is None:
        return {200}
    if problem == "pixel limit":
        return {413}
    if problem == "empty file":
        return {400}
    # what the API's first-bytes check turns away before decoding, or the decoder afterwards
    return {415, 422}


def test_every_kind_through_the_api(tiny_run, tmp_path):
    client = authorised_client(create_app(tiny_run, ServiceSettings(max_upload_bytes=4 * 1024 * 1024)))
    for item in corpus(tmp_path):
        response = client.post("/api/v1/predict", files={"file": (item.name, item.data, "application/octet-stream")})
        assert response.status_code in _expected_status(item.problem), f"{item.name}: {response.text}"
        body = response.json()
        if item.problem is None:
            assert 0 <= body["probability_malignant"] <= 1
        elif response.status_code == 422:  # decoded and refused: the problem, not the file's name (it may be the patient's)
            assert body["detail"].startswith("upload: ") and item.problem in body["detail"]
        else:
            assert body["detail"]
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("name", [".", "..", "../../etc/passwd", ""])
def test_hostile_upload_names(tiny_run, name):
    client = authorised_client(create_app(tiny_run))
    buffer = io.BytesIO()
    Image.fromarray(ultrasound_image(0, True)).save(buffer, format="PNG")
    response = client.post("/api/v1/predict", files={"file": (name, buffer.getvalue(), "image/png")})
    assert response.status_code in (200, 422), response.text
    assert client.get("/health").status_code == 200


def test_a_folder_of_dicom_files_is_answered_file_by_file_and_tallied(tiny_run, tmp_path, capsys):
    """A study folder as a PACS exports it: an ultrasound image, a cine, a CT and a header whose
    frame count is junk. Each refused file has its reason in its row; the last line counts files."""
    folder = tmp_path / "study"
    folder.mkdir()
    make_us_dicom(folder / "us.dcm")
    make_dicom(folder / "cine.dcm", frames=3)
    ct = pydicom.dcmread(make_dicom(folder / "ct.dcm"))
    ct.SOPClassUID, ct.Modality = pydicom.uid.CTImageStorage, "CT"
    ct.save_as(folder / "ct.dcm")
    broken = make_dicom(folder / "broken.dcm", frames=2)
    broken.write_bytes(broken.read_bytes().replace(b"\x28\x00\x08\x00IS\x02\x002 ", b"\x28\x00\x08\x00IS\x02\x00x "))
    out = tmp_path / "rows.csv"
    assert main(["predict", str(tiny_run), str(folder), "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    assert printed.out.splitlines()[-1] == "2 answered, 2 refused (1 malformed header, 1 not ultrasound)"
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    errors = {Path(row["input"].partition("#")[0]).name: row["error"] for row in rows}
    assert errors["ct.dcm"] == "CT Image Storage, modality CT: thyronet reads ultrasound only"
    assert errors["broken.dcm"] == ("Secondary Capture Image Storage, modality US: malformed header "
                                    "(NumberOfFrames 'x' is not a number)")
    assert errors["us.dcm"] == errors["cine.dcm"] == ""
    assert sum(row["input"].startswith(str(folder / "cine.dcm")) for row in rows) == 3  # a row per frame
