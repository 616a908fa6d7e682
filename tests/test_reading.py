"""The reading workflow: the model proposes, the radiologist confirms, changes and signs, outcomes
come later, and the store of signed reads is a dataset thyronet trains on."""

from __future__ import annotations

import csv
import io
import shutil
import stat
import subprocess

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from browser import chromium, live_server, log_in, needs_chromium
from synthetic import make_us_dicom, ultrasound_image
from thyronet.apps.cli import main
from thyronet.data import open_source
from thyronet.data.readstore import ReadError, ReadStore, Source
from thyronet.data.tirads import assess

BOX = (200, 100, 320, 200)
COMPLETE = {"composition": ["solid or almost completely solid"], "echogenicity": ["hypoechoic"], "shape": ["wider-than-tall"],
            "margin": ["smooth"], "echogenic foci": ["none"]}
OUTLINE = [[200, 150], [260, 100], [320, 150], [260, 200]]


def png(seed: int, malignant: bool) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(ultrasound_image(seed, malignant, BOX)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_read_is_proposed_confirmed_signed_and_never_changed_again(tmp_path):
    store = ReadStore(tmp_path / "store")
    proposal = {"probability": 0.7, "categories": {"composition": ["solid or almost completely solid"],
                                                    "echogenicity": ["isoechoic"]}, "outline": OUTLINE,
                "calipers": {"long": [[200, 150], [320, 150]], "short": [[260, 100], [260, 200]]}}
    read = store.add(png(1, True), ".png", Source(patient_name="DOE^JANE", spacing=(0.1, 0.1)), proposal, {"name": "resnet18"})
    assert read.state == "proposed" and read.confirmed["categories"] == proposal["categories"] and read.changed() == []
    assert read.max_diameter_mm() == pytest.approx(12.0)
    assert not read.assessment()[0].complete  # shape, margin, foci not proposed
    with pytest.raises(ReadError, match="incomplete"):
        store.sign(read.id, "dr-a")
    calipers = {"long": [[200, 150], [330, 150]], "short": [[260, 100], [260, 200]]}
    read = store.confirm(read.id, {"categories": COMPLETE, "calipers": calipers})
    assert read.state == "in progress" and read.changed() == ["categories.echogenicity", "categories.shape", "categories.margin",
                                                              "categories.echogenic foci", "calipers"]
    assessment, advice = read.assessment()
    assert (assessment.points, assessment.level) == (4, "TR4") and advice.action == "follow-up"  # 13 mm: follow-up from 10
    with pytest.raises(ReadError, match="unknown margin value"):
        store.confirm(read.id, {"categories": {"margin": ["wavy"]}})
    signed = store.sign(read.id, "dr-a")
    assert signed.signed and signed.signed_by == "dr-a"
    for change in (lambda: store.confirm(read.id, {"outline": OUTLINE}), lambda: store.sign(read.id, "dr-b")):
        with pytest.raises(ReadError) as refused:
            change()
        assert refused.value.status == 409
    amended = store.amend(read.id)
    assert (amended.version, amended.replaces, amended.state) == (2, read.id, "in progress")
    assert amended.confirmed == signed.confirmed
    assert [r.id for r in store.worklist()] == [amended.id] and store.get(read.id).signed  # the signed version stays
    assert [r.id for r in store.signed()] == [read.id]  # and stays in force while its amendment is in progress
    with pytest.raises(ReadError, match="amended already"):
        store.amend(read.id)
    store.add_outcome(amended.id, "bethesda", "ii", "dr-a")
    assert store.get(read.id).label() == 0  # outcomes belong to the read, every version
    store.add_outcome(amended.id, "pathology", "Malignant", "dr-a")
    assert store.get(amended.id).label() == 1  # surgical pathology outranks cytology
    with pytest.raises(ReadError, match="Bethesda"):
        store.add_outcome(amended.id, "bethesda", "VII", "dr-a")
    # the store holds patient data: owner-only
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "store" / "reads.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(read.image.stat().st_mode) == 0o600


def test_the_worklist_sorts_and_filters(tmp_path):
    store = ReadStore(tmp_path / "store")
    reads = [store.add(png(i, True), ".png", Source(), {"probability": p}, {}) for i, p in enumerate((0.2, 0.95, 0.55))]
    assert [r.suspicion for r in store.worklist(sort="suspicion")] == [0.95, 0.55, 0.2]
    assert store.worklist(sort="uncertainty")[0].id == reads[2].id  # closest to 0.5 first
    store.confirm(reads[0].id, {"categories": COMPLETE})
    assert [r.id for r in store.worklist(state="in progress")] == [reads[0].id]
    with pytest.raises(ReadError, match="unknown sort"):
        store.worklist(sort="name")


@pytest.mark.slow
def test_the_store_of_signed_reads_trains_a_model_that_predicts(tmp_path):
    """Signed reads with outcomes are a labelled dataset: `thyronet train --data STORE`, then predict."""
    store = ReadStore(tmp_path / "store")
    for i in range(20):
        malignant = i % 2 == 0
        read = store.add(png(100 + i, malignant), ".png", Source(), {"probability": 0.5, "outline": OUTLINE}, {})
        store.confirm(read.id, {"categories": COMPLETE})
        store.sign(read.id, "dr-a")
        store.add_outcome(read.id, "bethesda", "VI" if malignant else "II", "dr-a")
    store.add(png(99, True), ".png", Source(), {"probability": 0.5}, {})  # not signed: not in the dataset
    collection = open_source(tmp_path / "store")
    assert collection.source == "reads" and len(collection.images) == 20
    assert collection.label_counts() == {"benign": 10, "malignant": 10}
    record = collection.images[0]
    assert record.outlines and record.attributes["composition"] == "solid" and record.attributes["acr_level"] == "TR4"
    out = tmp_path / "runs"
    assert main(["train", "--config", "frame", "--data", str(tmp_path / "store"), "--model", "resnet18", "--epochs", "1",
                 "--set", "data.preprocess.size=32", "--set", "train.batch_size=8", "--set", "trainer.threads=1",
                 "--output-dir", str(out)]) == 0
    run = next(out.iterdir())
    image = tmp_path / "new.png"
    image.write_bytes(png(500, True))
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "p.csv")]) == 0
    assert 0 <= float(next(csv.DictReader(open(tmp_path / "p.csv")))["probability"]) <= 1


def test_the_reading_api_from_upload_to_signature(region_run, tmp_path):
    from fastapi.testclient import TestClient

    from service import bearer
    from thyronet.apps.serve.app import ServiceSettings, create_app

    app = create_app(region_run, ServiceSettings(store_dir=tmp_path / "store"))
    radiologist, viewer = TestClient(app, headers=bearer(app, "radiologist", "dr-a")), TestClient(app, headers=bearer(app, "viewer"))
    path = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    assert viewer.post("/api/v1/reads", files={"file": ("us.dcm", path.read_bytes())}).status_code == 403
    created = radiologist.post("/api/v1/reads", files={"file": ("us.dcm", path.read_bytes())})
    assert created.status_code == 201
    read = created.json()
    assert read["state"] == "proposed" and read["model"]["name"] and read["calibrated"]
    assert read["patient"]["id"] == "THYRONET-TEST"
    assert 0 <= read["proposal"]["probability"] <= 1
    assert viewer.get("/api/v1/reads").json()[0]["patient"] is None  # no patient details for a viewer
    image = radiologist.get(f"/api/v1/reads/{read['id']}/image")
    assert image.headers["content-type"] == "image/png" and cv2.imdecode(np.frombuffer(image.content, np.uint8), 0).shape == (360, 480)
    changed = {**COMPLETE, "echogenicity": ["very hypoechoic"]}
    calipers = {"long": [[160, 180], [330, 180]], "short": [[240, 140], [240, 220]]}
    put = radiologist.put(f"/api/v1/reads/{read['id']}", json={"categories": changed, "calipers": calipers})
    assert put.status_code == 200
    body = put.json()
    assert body["acr_tirads"]["level"] == "TR4" and body["acr_tirads"]["points"] == 5  # recomputed from the confirmed values
    assert body["max_diameter_mm"] == pytest.approx(17.0) and body["recommendation"]["action"] == "FNA"  # TR4 >= 15 mm
    assert "categories.echogenicity" in body["changed"] and "calipers" in body["changed"]
    assert viewer.put(f"/api/v1/reads/{read['id']}", json={"categories": COMPLETE}).status_code == 403
    assert radiologist.put(f"/api/v1/reads/{read['id']}", json={"categories": {"shape": ["round"]}}).status_code == 422
    signed = radiologist.post(f"/api/v1/reads/{read['id']}/sign").json()
    assert signed["state"] == "signed" and signed["signed_by"] == "dr-a" and signed["sr"]
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(radiologist.get(f"/api/v1/reads/{read['id']}/sr").content)))
    assert sr.VerificationFlag == "VERIFIED" and sr.VerifyingObserverSequence[0].VerifyingObserverName.family_name == "dr-a"
    assert sr.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
    group = sr.content.get_planar_roi_measurement_groups()[0]
    evaluations = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
    assert evaluations["ACR TI-RADS echogenicity (confirmed by the radiologist)"] == "very hypoechoic"
    assert evaluations["ACR TI-RADS echogenicity: origin"] == "changed by the radiologist"
    assert evaluations["ACR TI-RADS level, signed read"] == "TR4" and evaluations["Recommendation"] == "FNA"
    assert {m.name.meaning: m.value for m in group.get_measurements()}["Long axis"] == pytest.approx(17.0)
    observers = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert "Person Observer Name" in observers and "Device Observer UID" in observers
    if shutil.which("dciodvfy"):
        report = tmp_path / "signed.sr.dcm"
        sr.save_as(report)
        errors = [line for line in subprocess.run(["dciodvfy", str(report)], capture_output=True, text=True).stderr.splitlines()
                  if line.startswith("Error")]
        assert not errors, errors
    assert radiologist.put(f"/api/v1/reads/{read['id']}", json={"categories": COMPLETE}).status_code == 409
    assert radiologist.post(f"/api/v1/reads/{read['id']}/outcome", json={"kind": "bethesda", "value": "V"}).json()["label"] == 1
    assert radiologist.get("/api/v1/reads/nothing").status_code == 404
    assert TestClient(app).get("/api/v1/reads").status_code == 401
    audit = (app.state.access.audit.path).read_text()
    assert "read sign" in audit and read["id"] in audit and "THYRONET-TEST" not in audit
    assert "/api/v1/reads/{read_id}/sign" in TestClient(app, headers=bearer(app, "viewer")).get("/openapi.json").json()["paths"]


@needs_chromium
def test_a_radiologist_reads_and_signs_in_the_browser(region_run, tmp_path):
    """Log in, add a study, open it from the worklist, fill in and change categories, move a caliper,
    sign: the store holds the signed read with what was changed, and the level follows the change."""
    import os
    from pathlib import Path

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from thyronet.apps.serve.app import ServiceSettings, create_app

    app = create_app(region_run, ServiceSettings(state_dir=tmp_path / "state", store_dir=tmp_path / "store", explain=False))
    one_time = app.state.access.accounts.add_user("dr-read", "radiologist")
    study = make_us_dicom(tmp_path / "study.dcm", spacing_mm=0.1)
    shots = Path(os.environ.get("THYRONET_SCREENSHOT_DIR", tmp_path))

    def choose(driver, category: str, value: str) -> None:
        """Click a value and wait for the server's answer to redraw it checked (the form is redrawn
        after every change, so elements found before it are stale)."""
        selector = f"input[name='{category}'][value='{value}']"
        wait = WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException])
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, selector).is_enabled())
        if not driver.find_element(By.CSS_SELECTOR, selector).is_selected():
            driver.find_element(By.CSS_SELECTOR, selector).click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, selector).is_selected()
                   and d.execute_script("return window.pending === 0"))

    with live_server(app) as url, chromium(tmp_path / "profile", "1400,1000") as driver:
        log_in(driver, url + "/reads", "dr-read", one_time)
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "who").text.startswith("dr-read"))
        driver.get(url + "/reads")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "upload"))
        driver.find_element(By.ID, "upload").send_keys(str(study.resolve()))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "read-card").is_displayed())
        for category, value in (("composition", "solid or almost completely solid"), ("shape", "wider-than-tall"),
                                ("margin", "smooth"), ("echogenic foci", "none"), ("echogenicity", "isoechoic")):
            choose(driver, category, value)
        WebDriverWait(driver, 30).until(lambda d: "TR3" in d.find_element(By.ID, "level").text)  # 2 + 1 + 0 + 0 + 0
        choose(driver, "echogenicity", "very hypoechoic")
        WebDriverWait(driver, 30).until(lambda d: "TR4" in d.find_element(By.ID, "level").text)  # the level follows: 5 points
        read = ReadStore(tmp_path / "store").worklist()[0]
        driver.execute_script("window.scrollTo(0, 0)")
        canvas = driver.find_element(By.ID, "canvas")
        scale = canvas.size["width"] / driver.execute_script("return arguments[0].width", canvas)
        (x, y) = read.confirmed["calipers"]["long"][1]
        centre = (canvas.size["width"] / 2, canvas.size["height"] / 2)
        ActionChains(driver).move_to_element_with_offset(canvas, x * scale - centre[0], y * scale - centre[1]).click_and_hold() \
            .move_by_offset(25, 0).release().perform()
        WebDriverWait(driver, 30).until(lambda d: "calipers" in d.find_element(By.ID, "changed").text)
        assert driver.save_screenshot(str(shots / "reading-view.png"))
        driver.find_element(By.ID, "sign").click()
        WebDriverWait(driver, 30).until(lambda d: "signed" in d.find_element(By.ID, "read-title").text)
        driver.find_element(By.ID, "back").click()
        WebDriverWait(driver, 30).until(lambda d: "signed" in d.find_element(By.ID, "worklist").text)
        assert driver.save_screenshot(str(shots / "worklist.png"))
    signed = ReadStore(tmp_path / "store").worklist()[0]
    assert signed.signed and signed.signed_by == "dr-read"
    assert signed.confirmed["categories"]["echogenicity"] == ["very hypoechoic"] and "calipers" in signed.changed()
    assert signed.assessment()[0].level == "TR4"


def test_reads_stats_measure_how_far_the_radiologists_went_along_with_the_model(tmp_path, capsys):
    import json

    store = ReadStore(tmp_path / "store")
    calipers = {"long": [[200, 150], [300, 150]], "short": [[250, 120], [250, 180]]}
    cases = [  # (the model's echogenicity, the signed one, the model's decision, the outcome)
        ("hypoechoic", "hypoechoic", "malignant", "VI"), ("hypoechoic", "very hypoechoic", "malignant", "V"),
        ("isoechoic", "isoechoic", "benign", "II"), ("hypoechoic", "isoechoic", "malignant", "II")]
    for i, (proposed, signed, decision, bethesda) in enumerate(cases):
        proposal_categories = {**COMPLETE, "echogenicity": [proposed]}
        proposal = {"probability": 0.5, "decision": decision, "categories": proposal_categories, "calipers": calipers,
                    "level": assess(proposal_categories).level, "recommendation": "no FNA or follow-up"}
        read = store.add(png(i, True), ".png", Source(spacing=(0.1, 0.1)), proposal, {})
        changes = {"categories": {**COMPLETE, "echogenicity": [signed]}}
        if i == 3:
            changes["calipers"] = {"long": [[200, 150], [330, 150]], "short": calipers["short"]}
        store.confirm(read.id, changes)
        store.sign(read.id, "dr-a")
        store.add_outcome(read.id, "bethesda", bethesda, "dr-a")
    store.add(png(9, True), ".png", Source(), {"probability": 0.9}, {})  # not signed: not counted
    assert main(["reads", "stats", str(tmp_path / "store"), "--out", str(tmp_path / "stats.json")]) == 0
    result = json.loads((tmp_path / "stats.json").read_text())
    assert result["reads"] == 4
    echogenicity = result["categories"]["echogenicity"]
    assert (echogenicity["proposed"], echogenicity["kept"]) == (4, 2) and echogenicity["table"]["hypoechoic -> isoechoic"] == 1
    assert result["categories"]["composition"]["kept"] == 4
    # solid 2 + hypoechoic 2 = TR4, + very hypoechoic = TR4 (5 points), isoechoic TR3
    assert result["level"] == {"proposed": 4, "agreed": 3, "table": {"TR3 -> TR3": 1, "TR4 -> TR3": 1, "TR4 -> TR4": 2}}
    assert result["calipers_changed"] == 1 and result["long_axis_change"]["over_10_percent"] == 1
    outcome = result["against_outcome"]
    assert outcome["model"] == {"sensitivity": 1.0, "specificity": 0.5, "malignant": 2, "benign": 2}
    assert outcome["radiologist"] == {"sensitivity": 1.0, "specificity": 1.0, "malignant": 2, "benign": 2}
    assert "kappa" in capsys.readouterr().out


def test_a_signed_read_reaches_the_pacs_naming_the_radiologist(region_run, orthanc, tmp_path):
    """Sign with a PACS configured: the SR arrives in a real Orthanc, names the radiologist and
    carries the changed value."""
    from fastapi.testclient import TestClient

    from pacs import instances
    from service import bearer
    from thyronet.apps.serve.app import ServiceSettings, create_app

    base, port = orthanc
    app = create_app(region_run, ServiceSettings(store_dir=tmp_path / "store", explain=False,
                                                 send_to=(f"127.0.0.1:{port}:ORTHANC",)))
    radiologist = TestClient(app, headers=bearer(app, "radiologist", "dr-pacs"))
    study = make_us_dicom(tmp_path / "us.dcm", spacing_mm=0.1)
    read = radiologist.post("/api/v1/reads", files={"file": ("us.dcm", study.read_bytes())}).json()
    radiologist.put(f"/api/v1/reads/{read['id']}", json={"categories": {**COMPLETE, "echogenicity": ["very hypoechoic"]}})
    signed = radiologist.post(f"/api/v1/reads/{read['id']}/sign").json()
    assert signed["sent"] == {f"ORTHANC@127.0.0.1:{port}": True}
    (sr,) = instances(base, "SR")
    assert sr.VerifyingObserverSequence[0].VerifyingObserverName.family_name == "dr-pacs"
    assert sr.StudyInstanceUID == pydicom.dcmread(study).StudyInstanceUID
    group = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_image_measurement_groups() or \
        hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
    evaluations = {e.name.meaning: e.value.meaning for e in group[0].get_qualitative_evaluations()}
    assert evaluations["ACR TI-RADS echogenicity (confirmed by the radiologist)"] == "very hypoechoic"
    assert evaluations["ACR TI-RADS echogenicity: origin"] == "changed by the radiologist"
