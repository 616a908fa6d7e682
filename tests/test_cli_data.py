import json

import numpy as np
from PIL import Image

from thyronet.apps.cli import main


def test_summary_json(ddti_dir, capsys):
    assert main(["data", "summary", str(ddti_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 18 and summary["labelled_cases"] == 16
    assert summary["labels_by_image"]["unlabelled"] == 2
    assert summary["descriptors_by_case"]["calcifications"] == {"none": 18}


def test_summary_text_lists_warnings(tmp_path, ddti_dir, capsys):
    assert main(["data", "summary", str(ddti_dir)]) == 0
    assert "warnings: 0" in capsys.readouterr().out


def test_data_location_from_environment_then_error(monkeypatch, ddti_dir, tmp_path, capsys):
    monkeypatch.setenv("THYRONET_DDTI", str(ddti_dir))
    assert main(["data", "summary", "--json"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("THYRONET_DDTI", str(tmp_path / "absent"))
    assert main(["data", "summary"]) == 2
    err = capsys.readouterr().err
    assert "No data at" in err and "THYRONET_DDTI" in err and "Traceback" not in err


def test_strict_mode_exits_non_zero_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "benign"
    folder.mkdir()
    Image.new("L", (40, 40), 100).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "malignant").mkdir()
    assert main(["data", "summary", str(tmp_path)]) == 0
    assert main(["data", "summary", str(tmp_path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err


def test_preview_writes_a_png(ddti_dir, tmp_path):
    out = tmp_path / "p.png"
    assert main(["data", "preview", str(ddti_dir), "--out", str(out), "--count", "5", "--set", "data.preprocess.size=64"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (4 * 64, 2 * (64 + 14))


def test_split_writes_json_with_receipt(ddti_dir, tmp_path, capsys):
    out = tmp_path / "split.json"
    assert main(["data", "split", str(ddti_dir), "--folds", "3", "--out", str(out)]) == 0
    assert "cases on more than one side: 0" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["splits"]) == 3


def test_preview_shows_the_region_of_interest_of_a_config(ddti_dir, tmp_path):
    out = tmp_path / "roi.png"
    assert main(["data", "preview", str(ddti_dir), "--out", str(out), "--count", "4", "--set", "data.preprocess.size=64",
                 "--set", "data.roi.mode=expert"]) == 0
    with Image.open(out) as image:
        tiles = np.asarray(image.convert("L"))[14:78, :64]
    assert (tiles > 0).mean() > 0.8  # the squarer crop around the nodule fills more of the tile than the wide scan (0.68)
