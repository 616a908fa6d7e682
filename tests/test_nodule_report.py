"""A radiologist's answer: the nodule's size as calipers take it, one answer per nodule across its views."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from thyronet.apps.cli import main
from thyronet.inference.measure import measure_mask


def ellipse(shape, centre, axes, angle) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, -1)
    return mask


# at 45 degrees the raster's staircase puts boundary pixels up to 1.2 px farther apart
@pytest.mark.parametrize("angle, tolerance", [(0, 1), (30, 1), (45, 1.5), (90, 1)])
def test_an_ellipse_measures_its_axes_within_a_pixel(angle, tolerance):
    mask = ellipse((300, 400), (200, 150), (80, 40), angle)  # semi-axes 80 and 40: 161 x 81 pixels across
    size = measure_mask(mask)
    assert size.unit == "px"
    assert size.long_axis == pytest.approx(161, abs=tolerance) and size.short_axis == pytest.approx(81, abs=tolerance)
    assert size.area == pytest.approx(np.pi * 80 * 40, rel=0.02)


def test_spacing_converts_to_millimetres_and_anisotropic_pixels_measure_right():
    mask = ellipse((300, 400), (200, 150), (80, 40), 0)  # 161 px wide, 81 px tall
    size = measure_mask(mask, spacing_mm=(0.2, 0.1))  # rows 0.2 mm, columns 0.1 mm
    assert size.unit == "mm" and size.max_diameter_mm == pytest.approx(16.2, abs=0.2)  # 161 x 0.1 or 81 x 0.2
    assert size.height_to_width == pytest.approx(81 * 0.2 / (161 * 0.1), rel=0.03)
    assert size.taller_than_wide is True  # 16.2 mm deep against 16.1 mm wide
    assert measure_mask(np.zeros((10, 10), np.uint8)) is None


def test_the_largest_region_is_measured():
    mask = ellipse((300, 400), (100, 150), (60, 30), 0) | ellipse((300, 400), (320, 150), (20, 10), 0)
    assert measure_mask(mask).long_axis == pytest.approx(121, abs=1)


def test_views_of_one_nodule_give_one_answer(tiny_run, training_ddti, tmp_path, capsys):
    """A DDTI case's images, a file-name pattern and a DICOM series each make one nodule, whose
    probability is the mean of its views' (the rule the evaluation scores cases by); the report
    shows a nodule's views side by side."""
    import csv
    import shutil

    from thyronet.data.dicom import write_ultrasound
    from thyronet.data.imageio import read_image

    nodules_csv = tmp_path / "nodules.csv"
    assert main(["predict", str(tiny_run), str(training_ddti), "--group-by", "case", "--out", str(tmp_path / "p.csv"),
                 "--nodules-out", str(nodules_csv)]) == 0
    views = {r["input"]: float(r["probability"]) for r in csv.DictReader(open(tmp_path / "p.csv"))}
    rows = list(csv.DictReader(open(nodules_csv)))
    cases = {Path(p).name.split("_")[0] for p in views}
    assert {r["nodule"] for r in rows} == cases
    several = next(r for r in rows if int(r["views"]) > 1)
    mean = np.mean([views[item.rsplit("=", 1)[0]] for item in several["view_probabilities"].split(";")])
    assert float(several["probability"]) == pytest.approx(mean, abs=1e-4)
    assert several["decision"] == ("malignant" if mean >= float(several["threshold"]) else "benign")

    loose = tmp_path / "loose"
    loose.mkdir()
    for image in sorted(training_ddti.glob("*.jpg"))[:4]:
        shutil.copy(image, loose / f"patient{image.stem.split('_')[0]}_view{image.stem.split('_')[1]}.jpg")
    capsys.readouterr()
    assert main(["predict", str(tiny_run), str(loose), "--group-by", r"pattern:^(patient\d+)_"]) == 0
    out = capsys.readouterr().out
    assert out.count("nodule patient") == len({p.name.split("_")[0] for p in loose.iterdir()})

    frame = read_image(next(training_ddti.glob("*.jpg")))
    first = write_ultrasound(tmp_path / "a.dcm", frame, 0.1, series_uid="1.2.3.4")
    second = write_ultrasound(tmp_path / "b.dcm", frame[::-1].copy(), 0.1, series_uid="1.2.3.4")
    report = tmp_path / "series.html"
    assert main(["predict", str(tiny_run), str(first), str(second), "--group-by", "series", "--report", str(report),
                 "--dicom-out", str(tmp_path / "dicom")]) == 0
    out = capsys.readouterr().out
    assert "nodule 1.2.3.4:" in out and "(2 of 2 views" in out
    page = report.read_text()  # the nodule's row shows both views side by side, then every image with its heat map
    nodule_row = page.split("<h2>Nodules</h2>")[1].split("<h2>Images</h2>")[0]
    assert "1.2.3.4" in nodule_row and "2 of 2 views answered" in nodule_row
    assert nodule_row.count("<img class='view'") == 2 and "a.dcm: " in nodule_row and "b.dcm: " in nodule_row
    import highdicom as hd  # each view's SR names the same finding

    groups = [hd.sr.srread(p).content.get_image_measurement_groups()[0] for p in sorted((tmp_path / "dicom").glob("*.sr.dcm"))]
    assert len(groups) == 2 and groups[0].tracking_uid == groups[1].tracking_uid


def test_the_calipers_lie_on_the_axes_they_measure():
    mask = ellipse((300, 400), (200, 150), (80, 40), 0)  # long axis horizontal through (200, 150)
    size = measure_mask(mask, spacing_mm=(0.1, 0.1))
    (x0, y0), (x1, y1) = size.long_line
    # the raster's flat ends: the farthest boundary points are a few rows apart
    assert abs(x1 - x0) == pytest.approx(160, abs=1.5) and abs(y1 - y0) <= 8 and min(x0, x1) == pytest.approx(120, abs=1.5)
    (a0, b0), (a1, b1) = size.short_line  # across the middle, perpendicular to the long one
    assert abs(b1 - b0) == pytest.approx(80, abs=1.5) and (a0 + a1) / 2 == pytest.approx(200, abs=2)
    assert abs((x1 - x0) * (a1 - a0) + (y1 - y0) * (b1 - b0)) < 0.01 * 160 * 80  # perpendicular (cosine < 0.01)
