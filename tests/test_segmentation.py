"""Finding the nodule: segmentation metrics, joint augmentation, training, `thyronet segment`,
evaluation on a manifest with masks, and the predicted region feeding a classifier."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from synthetic import ultrasound_image
from thyronet.apps.cli import main
from thyronet.data import open_source
from thyronet.data.augment import AugmentConfig
from thyronet.data.dataset import SegmentationDataset
from thyronet.data.preprocess import PreprocessConfig
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES
from thyronet.errors import DataError
from thyronet.evaluation.segmetrics import box_iou, dice, iou, score_segmentation, size_agreement, summarise_segmentation
from thyronet.inference.answers import NOT_ASSESSED
from thyronet.inference.segmenter import Segmenter
from thyronet.runs.config import load_config

NODULE = (200, 100, 320, 200)  # x0, y0, x1, y1 of the synthetic ellipse


def test_metrics_on_known_masks():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[0:4, 0:4] = 255  # 16 pixels
    b[2:6, 0:4] = 255  # 16 pixels, 8 shared
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(8 / 24)
    assert dice(a * 0, b * 0) == 1.0 and dice(a, b * 0) == 0.0
    assert box_iou((0, 0, 4, 4), (2, 0, 6, 4)) == pytest.approx(8 / 24) and box_iou(None, (0, 0, 1, 1)) == 0.0
    scores = score_segmentation(a, (0, 0, 4, 4), b, [(5, 5, 9, 9), (0, 0, 4, 5)])  # best of two expert regions
    assert scores["box_iou"] == pytest.approx(16 / 20) and scores["detected"] == 1.0
    summary = summarise_segmentation([{"dice": d, "iou": d, "box_iou": d, "detected": 1.0} for d in (0.2, 0.4, 0.6, 0.8)])
    assert summary["dice"]["mean"] == pytest.approx(0.5) and 0.2 <= summary["dice"]["ci_low"] < 0.5 < summary["dice"]["ci_high"] <= 0.8


def test_joint_augmentation_keeps_image_and_mask_aligned(training_ddti):
    records = [r for r in open_source(training_ddti).images if r.label == 1][:3]  # dark nodules
    augment = AugmentConfig(rotation=30, scale_min=0.7, scale_max=1.3, brightness=0.0, contrast=0.0, speckle=0.0)
    dataset = SegmentationDataset(records, PreprocessConfig(size=64), augment, 1, 0.2, 0.2)
    moved = 0
    for index in range(len(records)):
        for seed in range(6):
            image, mask, _ = dataset[(index, seed)]
            assert image.shape == mask.shape == (1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
            inside, outside = image[mask > 0].mean(), image[(mask == 0) & (image > image.min())].mean()
            assert inside < outside - 0.5  # the dark nodule is still under its (moved) mask
            moved += not torch.equal(mask, dataset[(index, seed + 1)][1])
    assert moved > 0  # the augmentation did move things
    again = dataset[(0, 3)]
    assert torch.equal(again[0], dataset[(0, 3)][0])  # reproducible per seed


def test_segmentation_run_folder_and_results(segmenter_run):
    results = json.loads((segmenter_run / "results.json").read_text())
    assert results["task"] == "segment" and {"val", "test"} <= set(results)
    assert results["test"]["dice"]["mean"] > 0.6  # a bright/dark ellipse on texture is easy
    assert (segmenter_run / "segments_test.csv").is_file() and (segmenter_run / "curves.png").is_file()
    header = (segmenter_run / "metrics.csv").read_text().splitlines()[0]
    assert "val/dice" in header


def test_segment_command_writes_masks_overlays_and_csv(segmenter_run, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(ultrasound_image(11, True, NODULE)).save(folder / "dark.png")
    Image.fromarray(ultrasound_image(12, False, NODULE)).convert("RGB").save(folder / "bright.jpg")
    out = tmp_path / "out"
    assert main(["segment", str(segmenter_run), str(folder), "--out", str(out)]) == 0
    rows = {row["file"].split("/")[-1]: row for row in csv.DictReader(open(out / "segments.csv"))}
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert main(["segment", str(segmenter_run), str(folder / "dark.png"), str(broken), "--out", str(tmp_path / "o2")]) == 1
    statuses = {row["file"].split("/")[-1]: row["status"] for row in csv.DictReader(open(tmp_path / "o2" / "segments.csv"))}
    assert statuses["dark.png"] == "nodule found" and statuses["broken.jpg"].startswith("error: corrupt or truncated")
    for name in ("dark", "bright"):
        row = rows[f"{name}.{'png' if name == 'dark' else 'jpg'}"]
        assert row["status"] == "nodule found"
        box = tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert box_iou(box, NODULE) > 0.5, box
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.size == (560, 360) and set(np.unique(np.asarray(mask))) <= {0, 255}
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.size == (560, 360) and overlay.mode == "RGB"
        assert int(row["area_px"]) == int((np.asarray(Image.open(out / f"{name}_mask.png")) > 0).sum())
        assert row["width_mm"] == ""  # no pixel spacing in a PNG or JPEG


def test_no_nodule_found_is_said_and_no_box_is_invented(tmp_path):
    from thyronet.apps.segment import segment_records
    from thyronet.data import open_inputs

    never = torch.nn.Conv2d(1, 1, 1)
    torch.nn.init.zeros_(never.weight)
    torch.nn.init.constant_(never.bias, -10.0)  # probability ~0 everywhere
    segmenter = Segmenter(never, load_config("segment", ["data.preprocess.size=32"]))
    Image.fromarray(ultrasound_image(1, True, NODULE)).save(tmp_path / "a.png")
    [row] = segment_records(segmenter, open_inputs([tmp_path / "a.png"]).images, tmp_path / "out")
    assert row.status == "no nodule found" and row.x0 is None and row.area_px == 0
    assert not np.asarray(Image.open(tmp_path / "out" / "a_mask.png")).any()


def test_dicom_pixel_spacing_gives_millimetres(tmp_path):
    import pydicom

    from synthetic import make_dicom
    from thyronet.apps.segment import measure
    from thyronet.data.dicom import pixel_spacing_mm
    from thyronet.inference.segmenter import Segmentation

    path = make_dicom(tmp_path / "s.dcm")
    assert pixel_spacing_mm(path) is None
    dataset = pydicom.dcmread(path)
    dataset.PixelSpacing = [0.1, 0.2]
    dataset.save_as(path)
    assert pixel_spacing_mm(path) == (0.1, 0.2)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 20:60] = 255
    row = measure("s.dcm", Segmentation(mask, (20, 10, 60, 30), 0.9), (0.1, 0.2))
    assert (row.width_px, row.height_px, row.width_mm, row.height_mm, row.area_mm2) == (40, 20, 8.0, 2.0, 16.0)


def test_manifest_masks_are_read_and_checked(segmenter_run, tmp_path, capsys):
    truth = np.zeros((360, 560), np.uint8)
    x0, y0, x1, y1 = NODULE
    import cv2

    cv2.ellipse(truth, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, 255, -1)
    for i in range(3):
        Image.fromarray(ultrasound_image(20 + i, i % 2 == 0, NODULE)).save(tmp_path / f"i{i}.png")
    Image.fromarray(truth).save(tmp_path / "m.png")
    Image.fromarray(truth[:100, :100]).save(tmp_path / "small.png")
    (tmp_path / "ok.csv").write_text("path,label,mask\ni0.png,malignant,m.png\ni1.png,benign,m.png\ni2.png,malignant,m.png\n")
    collection = open_source(tmp_path / "ok.csv")
    assert all(len(r.outlines) == 1 for r in collection.images)
    (tmp_path / "bad.csv").write_text("path,label,mask\ni0.png,malignant,small.png\n")
    with pytest.raises(DataError, match="small.png: mask of 100x100 pixels for an image of 560x360"):
        open_source(tmp_path / "bad.csv", strict=True)
    assert main(["evaluate", str(segmenter_run), str(tmp_path / "ok.csv"), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["images"] == 3 and metrics["dice"]["mean"] > 0.6 and metrics["detected"]["mean"] >= 2 / 3
    long_axis = metrics["size_agreement"]["long_axis"]
    assert long_axis["n"] == 3 and 0 <= long_axis["within_10"]["share"] <= long_axis["within_20"]["share"] <= 1
    assert (tmp_path / "ev" / "segments_eval_bland_altman.png").is_file()
    rows = list(csv.DictReader(open(tmp_path / "ev" / "segments_eval.csv")))
    assert all(float(r["expert_long_axis_px"]) == pytest.approx(121, abs=1.5) for r in rows)  # the 120 x 100 ellipse


def test_size_agreement_counts_a_missed_nodule_as_outside_every_tolerance():
    rows = [{"long_axis_px": 105.0, "expert_long_axis_px": 100.0, "short_axis_px": 50.0, "expert_short_axis_px": 40.0},
            {"long_axis_px": 85.0, "expert_long_axis_px": 100.0, "short_axis_px": 41.0, "expert_short_axis_px": 40.0},
            {"long_axis_px": None, "expert_long_axis_px": 100.0, "short_axis_px": None, "expert_short_axis_px": 40.0}]
    agreement = size_agreement(rows)
    assert agreement["long_axis"]["measured"] == 2 and agreement["long_axis"]["median_error"] == pytest.approx(0.10)
    assert agreement["long_axis"]["within_10"]["share"] == pytest.approx(1 / 3)
    assert agreement["long_axis"]["within_20"]["share"] == pytest.approx(2 / 3)
    assert agreement["short_axis"]["within_10"]["share"] == pytest.approx(1 / 3)  # 25% and 2.5% off, one missed


def test_predicted_region_classifier_runs_end_to_end(region_run, tmp_path, capsys):
    """A classifier on the predicted region with descriptor heads: trained, then `predict` on a raw frame."""
    run = region_run
    results = json.loads((run / "results.json").read_text())
    assert "test_expert_region" in results and set(results["test"]["descriptors"]) == {
        "composition", "echogenicity", "margins", "calcifications"}
    image = tmp_path / "scan.png"
    Image.fromarray(ultrasound_image(31, True, NODULE)).save(image)
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p.csv"), "--report", str(tmp_path / "r.html")]) == 0
    row = next(csv.DictReader(open(tmp_path / "p.csv")))
    assert row["region"] == "predicted" and box_iou(tuple(map(int, row["box"].split(","))), NODULE) > 0.5
    # a head is a finding only where it beat the commonest value on validation; on this tiny set
    # the run decides which, and every output follows its verdict
    reliability = results["descriptor_reliability"]
    assert set(reliability) == set(results["test"]["descriptors"])
    for head, verdict in reliability.items():
        if verdict["assessed"]:
            assert row[head] in DESCRIPTOR_CLASSES[head] and 0 <= float(row[f"{head}_prob"]) <= 1
        else:
            assert row[head] == NOT_ASSESSED and row[f"{head}_prob"] == ""
    # the outline gives calipers (pixels: a PNG has no calibration) and ACR's shape
    assert float(row["long_axis"]) >= float(row["short_axis"]) > 0 and row["size_unit"] == "px"
    assert row["acr_shape"] in ("taller-than-wide", "wider-than-tall")
    out = capsys.readouterr().out
    assert "outline: " in out and "ACR recommendation: " in out
    if all(v["assessed"] for v in reliability.values()):
        assert row["description"].count(",") == 3 and row["tirads_level"].startswith("TR")
        assert row["recommendation"] == "size needed"  # a level, but no size in mm
    else:
        assert row["tirads_level"] == "" and "ACR TI-RADS incomplete" in out and row["recommendation"] == "incomplete"
    assert "looked at: predicted" in (tmp_path / "r.html").read_text()
    assert main(["predict", str(run), str(image), "--box", "190,90,330,210", "--out", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())[0]["region"] == "box"
    assert main(["segment", str(run), str(image), "--out", str(tmp_path / "s")]) == 0  # the run carries its segmenter

    # exported, the classifier and its segmenter take the raw frame to the same region and answer
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.segmenter.onnx").is_file()
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), str(image), "--out", str(tmp_path / "o.csv")]) == 0
    exported = next(csv.DictReader(open(tmp_path / "o.csv")))
    assert exported["region"] == "predicted" and exported["box"] == row["box"]
    assert float(exported["probability"]) == pytest.approx(float(row["probability"]), abs=1e-3)
    (tmp_path / "m.segmenter.onnx").unlink()
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), str(image), "--out", str(tmp_path / "x.csv")]) == 2
    assert "m.segmenter.onnx is missing" in capsys.readouterr().err

    # as a model package, folder or zip, the run gives the same answers, and its segmenter comes with it
    assert main(["export", str(run), "--package", str(tmp_path / "package.zip")]) == 0
    assert main(["predict", str(tmp_path / "package.zip"), str(image), "--out", str(tmp_path / "k.csv")]) == 0
    packaged = next(csv.DictReader(open(tmp_path / "k.csv")))
    assert packaged["region"] == "predicted" and packaged["box"] == row["box"]
    assert float(packaged["probability"]) == pytest.approx(float(row["probability"]), abs=1e-5)
    assert packaged["composition_prob"] == pytest.approx(row["composition_prob"])
    assert main(["segment", str(tmp_path / "package.zip"), str(image), "--out", str(tmp_path / "ks")]) == 0
    assert (tmp_path / "ks" / "segments.csv").read_text() == (tmp_path / "s" / "segments.csv").read_text()
