"""DICOM out: the nodule's SEG and a TID 1500 SR for a DICOM image, read back and validated."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from synthetic import make_us_dicom
from thyronet.apps.cli import main
from thyronet.apps.dicom_out import PROBABILITY, RECOMMENDATION, write_dicom_results
from thyronet.data.dicom import pixel_spacing_mm
from thyronet.data.preprocess import Geometry
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES
from thyronet.errors import DataError
from thyronet.inference.answers import NOT_ASSESSED, Answer, answer_result, write_predictions
from thyronet.inference.backends import Backend
from thyronet.inference.calibration import Calibration
from thyronet.inference.nodules import NoduleAnswer
from thyronet.inference.predictor import FrameResult, PreparedInput

DCIODVFY = shutil.which("dciodvfy")


# the heads' answers for a solid, hypoechoic nodule with ill-defined margins and microcalcifications
HEADS = {"composition": "solid", "echogenicity": "hypoechoic", "margins": "ill defined", "calcifications": "microcalcifications"}


def backend_for(path, reliability=None) -> Backend:
    """A backend as a run gives one: a calibration at 0.62 and the run's descriptor reliability."""
    calibration = Calibration(threshold=0.62, val_sensitivity=0.9, val_specificity=0.3)
    return Backend(SimpleNamespace(calibration=calibration), path, "torch", {"descriptor_reliability": reliability or {}})


def answered(path, with_mask=True, reliability=None) -> Answer:
    """An answer as predict gives one: a probability, descriptors, the predicted nodule mask (a
    161 x 81 pixel ellipse) and calipers in the image's calibration."""
    ds = pydicom.dcmread(path)
    mask = np.zeros((ds.Rows, ds.Columns), np.uint8)
    cv2.ellipse(mask, (240, 180), (80, 40), 0, 0, 360, 255, -1)
    geometry = Geometry((ds.Rows, ds.Columns), (112, 116, 369, 245), 128)  # the nodule's box grown by the margin
    prepared = PreparedInput(np.zeros((128, 128), np.uint8), geometry, "predicted", (160, 140, 321, 221),
                             mask if with_mask else None)
    heads = {name: np.where(np.array(classes) == HEADS[name], 0.7, 0.3 / (len(classes) - 1))
             for name, classes in DESCRIPTOR_CLASSES.items()}
    return answer_result(backend_for(path, reliability), FrameResult(0.81, heads, prepared), str(path), ds.pixel_array,
                         spacing=pixel_spacing_mm(path))


def test_size_and_recommendation_from_the_calibrated_image(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    assert pixel_spacing_mm(path) == pytest.approx((0.1, 0.1))
    prediction = answered(path).prediction
    assert prediction.size.unit == "mm" and prediction.size.long_axis == pytest.approx(16.1, abs=0.1)
    # solid 2, hypoechoic 2, wider than tall 0, ill-defined 0, punctate echogenic foci 3: TR5
    assert prediction.acr.values["shape"] == ("wider-than-tall",) and (prediction.tirads_points, prediction.tirads_level) == (7, "TR5")
    assert prediction.recommendation.action == "FNA"  # TR5 and 16 mm >= 10 mm
    uncalibrated = answered(make_us_dicom(tmp_path / "plain.dcm", spacing_mm=None)).prediction
    assert uncalibrated.size.unit == "px" and uncalibrated.recommendation.action == "size needed"


def test_seg_and_sr_reference_the_image_and_hold_the_answer(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    source = pydicom.dcmread(path)
    written = write_dicom_results(path, answered(path), tmp_path / "out", "resnet18")
    seg_path, sr_path = sorted(written, key=lambda p: p.name)  # *.seg.dcm, *.sr.dcm
    seg = hd.seg.segread(seg_path)
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.pixel_array.sum() == pytest.approx(np.pi * 80 * 40, rel=0.02)
    sr = hd.sr.srread(sr_path)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 1
    values = {m.name.meaning: m.value for m in groups[0].get_measurements()}
    assert values[PROBABILITY.meaning] == pytest.approx(0.81)
    assert values["Long axis"] == pytest.approx(16.1, abs=0.1) and values["Short axis"] == pytest.approx(8.1, abs=0.1)
    assert values["ACR TI-RADS points from predicted descriptors and outline"] == 7
    evaluations = {e.name.meaning: e.value.meaning for e in groups[0].get_qualitative_evaluations()}
    assert evaluations["ACR TI-RADS level from predicted descriptors and outline"] == "TR5"
    assert evaluations["ACR TI-RADS echogenic foci (proposed)"] == "punctate echogenic foci"
    assert evaluations["ACR TI-RADS shape (proposed)"] == "wider-than-tall"
    assert evaluations[RECOMMENDATION.meaning] == "FNA"
    assert evaluations["Decision at the operating threshold (model)"] == codes.SCT.Malignant.meaning
    assert evaluations["composition (predicted)"] == "solid"
    assert groups[0].reference_type.meaning == "Image Region"


def test_secondary_capture_shows_the_contour_and_the_answer_burned_in(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    source = pydicom.dcmread(path)
    written = write_dicom_results(path, answered(path), tmp_path / "out", "resnet18", secondary_capture=True)
    capture = pydicom.dcmread(next(p for p in written if p.name.endswith(".sc.dcm")))
    assert capture.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and capture.BurnedInAnnotation == "YES"
    assert capture.StudyInstanceUID == source.StudyInstanceUID and capture.PatientID == source.PatientID
    picture = capture.pixel_array
    assert picture.shape == (source.Rows, source.Columns, 3)
    green = (picture[..., 1] > 200) & (picture[..., 0] < 80)  # the nodule's contour around the ellipse at (240, 180)
    ys, xs = np.nonzero(green)
    assert abs(xs.min() - 160) <= 3 and abs(xs.max() - 320) <= 3 and abs(ys.min() - 140) <= 3 and abs(ys.max() - 220) <= 3
    assert (picture[:8, :, :] == 0).all(axis=-1).mean() > 0.5  # the caption's band across the top
    assert not [p for p in write_dicom_results(path, answered(path), tmp_path / "plain", "resnet18") if p.name.endswith(".sc.dcm")]


def test_views_of_one_nodule_share_its_tracking_uid_and_answer(tmp_path):
    first, second = (make_us_dicom(tmp_path / f"{name}.dcm", spacing, series_uid="1.2.3.4") for name, spacing in (("a", 0.1), ("b", 0.15)))
    views = [answered(first), answered(second)]
    views[1].prediction.probability = 0.41
    nodule = NoduleAnswer.combine(backend_for(first), "1.2.3.4", views)
    assert nodule.probability == pytest.approx(0.61) and nodule.decision == "benign"  # the mean against 0.62
    assert nodule.acr.max_diameter_mm == pytest.approx(161 * 0.15, abs=0.2)  # one size: the largest view's
    assert nodule.acr.assessment.level == "TR5" and nodule.acr.recommendation.action == "FNA"
    groups = []
    for path, view in zip((first, second), views, strict=True):
        sr_path = next(p for p in write_dicom_results(path, view, tmp_path / "out", "resnet18", nodule=nodule)
                       if p.name.endswith(".sr.dcm"))
        groups.append(hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()[0])
    assert groups[0].tracking_uid == groups[1].tracking_uid and "1.2.3.4" in groups[0].tracking_identifier
    for group, view in zip(groups, views, strict=True):
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values[PROBABILITY.meaning] == pytest.approx(view.prediction.probability)
        assert values["Probability of malignancy, nodule: mean of its views (model)"] == pytest.approx(0.61)
        assert values["Views of the nodule answered"] == 2
        evaluations = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
        assert evaluations["Decision for the nodule at the threshold (model)"] == codes.SCT.Benign.meaning
        assert evaluations["ACR TI-RADS level, nodule across its views (model)"] == "TR5"
        assert evaluations["ACR TI-RADS recommendation, nodule across its views (model)"] == "FNA"
    alone = [hd.sr.srread(next(p for p in write_dicom_results(path, answered(path), tmp_path / f"alone-{path.stem}", "resnet18")
                               if p.name.endswith(".sr.dcm"))).content.get_planar_roi_measurement_groups()[0]
             for path in (first, second)]
    assert alone[0].tracking_uid != alone[1].tracking_uid  # images answered alone: findings of their own


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian's dicom3tools) is not installed")
def test_dciodvfy_finds_no_error(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm")
    view = answered(path)
    nodule = NoduleAnswer("1.2.3.4", [view], 0.81, "malignant", view)
    for written in write_dicom_results(path, view, tmp_path / "out", "resnet18", secondary_capture=True, nodule=nodule) + \
            write_dicom_results(path, answered(path, with_mask=False), tmp_path / "nomask", "resnet18"):
        report = subprocess.run([DCIODVFY, str(written)], capture_output=True, text=True).stderr
        assert not [line for line in report.splitlines() if line.startswith("Error")], (written.name, report)


def test_predict_writes_sr_for_dicom_inputs_and_says_so_for_others(tiny_run, tmp_path, capsys, training_ddti):
    path = make_us_dicom(tmp_path / "us.dcm")
    jpeg = next(training_ddti.glob("*.jpg"))
    assert main(["predict", str(tiny_run), str(path), str(jpeg), "--dicom-out", str(tmp_path / "dicom")]) == 0
    out = capsys.readouterr().out
    assert "not a DICOM file: no SR or SEG written" in out and ".sr.dcm" in out
    sr = hd.sr.srread(next((tmp_path / "dicom").glob("*.sr.dcm")))  # a whole-frame model: no nodule mask, no SEG
    assert sr.content.get_image_measurement_groups() and not list((tmp_path / "dicom").glob("*.seg.dcm"))


def test_the_api_and_the_report_give_size_and_recommendation(region_run, tmp_path):
    from service import authorised_client
    from thyronet.apps.serve.app import create_app
    from thyronet.inference.backends import load_backend

    reliability = load_backend(region_run).info["descriptor_reliability"]  # measured on validation, kept with the run
    assert set(reliability) == {"composition", "echogenicity", "margins", "calcifications"}
    assert all("assessed" in head for head in reliability.values())
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    body = authorised_client(create_app(region_run)).post(
        "/api/v1/predict", files={"file": ("us.dcm", path.read_bytes(), "application/dicom")}).json()
    found = body["region"] == "predicted"  # the segmenter found a nodule: its size in mm, its shape from the outline
    if found:
        assert body["nodule_size"]["unit"] == "mm" and body["nodule_size"]["long_axis"] > 0
    if all(head["assessed"] for head in reliability.values()) and found:
        assert body["tirads_level"] and body["acr_recommendation"]["action"] in ("FNA", "follow-up", "no FNA or follow-up")
    else:  # a 1-epoch model's heads rarely beat the commonest value: no level, and no recommendation says why
        assert body["tirads_level"] is None and body["acr_tirads"]["missing"]
        assert body["acr_recommendation"]["action"] == "incomplete"
    assert main(["predict", str(region_run), str(path), "--report", str(tmp_path / "r.html")]) == 0
    report = (tmp_path / "r.html").read_text()
    assert f"ACR TI-RADS 2017: {body['acr_recommendation']['action']}" in report and "derived from predictions" in report


@pytest.mark.parametrize("syntax", ["RLE Lossless", "JPEG-LS Lossless", "JPEG Baseline"])
def test_compressed_ultrasound_is_read_and_answered(syntax, tiny_run, tmp_path):
    """Scanners send compressed pixel data: RLE, JPEG-LS (pyjpegls) and JPEG baseline (Pillow) decode."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless, RLELossless

    from thyronet.data.imageio import read_image

    path = make_us_dicom(tmp_path / "us.dcm")
    ds = pydicom.dcmread(path)
    plain = ds.pixel_array.copy()
    if syntax == "JPEG Baseline":
        jpeg = io.BytesIO()
        Image.fromarray(plain).save(jpeg, format="JPEG", quality=95)
        ds.PixelData = encapsulate([jpeg.getvalue()])
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds["PixelData"].VR = "OB"
    else:
        ds.compress(RLELossless if syntax == "RLE Lossless" else JPEGLSLossless)
    ds.save_as(tmp_path / "compressed.dcm", enforce_file_format=True)
    decoded = read_image(tmp_path / "compressed.dcm")
    assert decoded.shape == plain.shape
    assert np.abs(decoded.astype(int) - plain).mean() < (3 if syntax == "JPEG Baseline" else 1e-9)
    assert main(["predict", str(tiny_run), str(tmp_path / "compressed.dcm"), "--dicom-out", str(tmp_path / "out")]) == 0
    assert list((tmp_path / "out").glob("*.sr.dcm"))


def _strip(path, *names, **values):
    dataset = pydicom.dcmread(path)
    for name in names:
        dataset.pop(name, None)
    for name, value in values.items():
        setattr(dataset, name, value)
    dataset.save_as(path)
    return path


@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 100", "Müller^Zoë"), ("ISO_IR 192", "Müller^Zoë=山田^太郎")])
def test_a_source_without_type2_attributes_gets_its_sr_and_seg_with_the_name_unchanged(tmp_path, charset, name):
    path = _strip(make_us_dicom(tmp_path / "us.dcm"), "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                  "StudyTime", "StudyDate", "ReferringPhysicianName", "FrameOfReferenceUID",
                  SpecificCharacterSet=charset, PatientName=name)
    written = write_dicom_results(path, answered(path), tmp_path / "out", "resnet18", secondary_capture=True)
    assert sorted(p.name.split(".")[-2] for p in written) == ["sc", "seg", "sr"]
    for result in written:
        dataset = pydicom.dcmread(result)
        assert str(dataset.PatientName) == name and dataset.PatientBirthDate == "" and dataset.AccessionNumber == ""
        if DCIODVFY:
            report = subprocess.run([DCIODVFY, str(result)], capture_output=True, text=True).stderr
            assert not [line for line in report.splitlines() if line.startswith("Error")], (result.name, report)


def test_a_uid_that_is_not_a_uid_is_refused_before_it_names_a_file(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm")
    _strip(path, SOPInstanceUID="../../../../elsewhere/TRAVERSAL")
    with pytest.raises(DataError, match="SOPInstanceUID is not a valid DICOM UID"):
        write_dicom_results(path, answered(path), tmp_path / "out", "resnet18")
    assert not list(tmp_path.rglob("*TRAVERSAL*"))


def test_a_descriptor_head_no_better_than_the_commonest_value_is_not_assessed_in_csv_and_sr(tmp_path):
    """The run's held-out reliability says echogenicity did not beat the majority: no finding, no level."""
    import csv

    path = make_us_dicom(tmp_path / "us.dcm")
    answer = answered(path, reliability={name: {"assessed": name != "echogenicity"} for name in DESCRIPTOR_CLASSES})
    prediction = answer.prediction
    assert prediction.descriptors["echogenicity"].shown == NOT_ASSESSED and prediction.descriptors["echogenicity"].probability is None
    assert prediction.descriptors["composition"].value == "solid" and "hypoechoic" not in prediction.description
    assert prediction.tirads_level is None and prediction.acr.missing == ("echogenicity",)  # a category it needs is missing
    assert prediction.recommendation.action == "incomplete"
    write_predictions([prediction], tmp_path / "predictions.csv")
    with open(tmp_path / "predictions.csv") as handle:
        row = next(csv.DictReader(handle))
    assert row["echogenicity"] == NOT_ASSESSED and row["tirads_level"] == "" and row["tirads_missing"] == "echogenicity"
    assert row["acr_composition"] == "solid or almost completely solid" and row["size_unit"] == "mm"
    assert float(row["long_axis"]) == pytest.approx(16.1, abs=0.1) and float(row["height_to_width"]) == pytest.approx(81 / 161, abs=0.02)
    sr_path = next(p for p in write_dicom_results(path, answer, tmp_path / "out", "resnet18") if p.name.endswith(".sr.dcm"))
    evaluations = {e.name.meaning: e.value.meaning
                   for e in hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()[0].get_qualitative_evaluations()}
    assert evaluations[codes.DCM.Echogenicity.meaning] == NOT_ASSESSED
    assert evaluations["ACR TI-RADS level from predicted descriptors and outline"] == "incomplete"
    assert evaluations[RECOMMENDATION.meaning] == "incomplete"


def test_a_descriptor_added_to_the_vocabulary_reaches_the_csv_the_api_schema_and_the_sr(tmp_path, monkeypatch):
    """Descriptors are data: one entry in the vocabulary, and every output carries the new head."""
    import csv

    from thyronet.apps.serve.schema import prediction_model

    monkeypatch.setitem(DESCRIPTOR_CLASSES, "vascularity", ("avascular", "peripheral", "central"))
    monkeypatch.setitem(HEADS, "vascularity", "central")
    path = make_us_dicom(tmp_path / "us.dcm")
    answer = answered(path)
    assert answer.prediction.descriptors["vascularity"].value == "central"
    assert answer.prediction.tirads_level == "TR5"  # a head ACR does not score leaves the level alone
    write_predictions([answer.prediction], tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as handle:
        row = next(csv.DictReader(handle))
    assert row["vascularity"] == "central" and float(row["vascularity_prob"]) == pytest.approx(0.7)
    schema = prediction_model().model_json_schema()
    assert "vascularity" in schema["$defs"]["Descriptors"]["properties"]
    sr_path = next(p for p in write_dicom_results(path, answer, tmp_path / "out", "resnet18") if p.name.endswith(".sr.dcm"))
    evaluations = {e.name.meaning: e.value.meaning
                   for e in hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()[0].get_qualitative_evaluations()}
    assert evaluations["vascularity (predicted)"] == "central"


def test_old_style_dates_are_written_as_dicom_and_a_retired_class_is_refused_in_one_line(tmp_path):
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    dataset = pydicom.dcmread(path)
    dataset.StudyTime, dataset.StudyDate = "11:20:00", "1994.11.05"  # ACR-NEMA's spelling, found in old files
    dataset.save_as(path)
    sr_path = next(p for p in write_dicom_results(path, answered(path), tmp_path / "out", "resnet18") if p.name.endswith(".sr.dcm"))
    sr = pydicom.dcmread(sr_path)
    assert (sr.StudyTime, sr.StudyDate) == ("112000", "19941105")
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (Retired)
    dataset.save_as(path)
    with pytest.raises(DataError, match=r"Ultrasound Image Storage \(Retired\).*no SR or SEG can reference it"):
        write_dicom_results(path, answered(path), tmp_path / "retired", "resnet18")
