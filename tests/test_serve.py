"""REST API with good and bad uploads, and the page in headless Chromium."""

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from synthetic import make_dicom, ultrasound_image
from thyronet.apps.serve.app import ServiceSettings, create_app


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(tiny_run, ServiceSettings(max_upload_bytes=2 * 1024 * 1024)))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_and_openapi(client):
    assert client.get("/health").json()["status"] == "ok"
    assert "/api/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert "not a diagnosis" in client.get("/").text


def test_predict_image_returns_probability_decision_and_overlay(client):
    response = client.post("/api/v1/predict", files={"file": ("nodule.png", png_bytes(ultrasound_image(0, True)), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 <= body["probability_malignant"] <= 1 and body["decision"] in ("benign", "malignant")
    assert body["model"]["name"] == "resnet18" and body["overlay_png"] and body["input_png"]
    assert "not a diagnosis" in body["notice"]
    assert body["region"] == "scan area" and body["nodule_box"] is None and body["descriptors"] is None
    with Image.open(io.BytesIO(base64.b64decode(body["overlay_png"]))) as overlay:
        assert overlay.size == (560, 360)  # shown on the input at its own resolution, not the 48-px model input


def test_a_box_for_a_whole_scan_model_is_refused(client):
    files = {"file": ("nodule.png", png_bytes(ultrasound_image(0, True)), "image/png")}
    response = client.post("/api/v1/predict", files=files, data={"box": "10,10,100,100"})
    assert response.status_code == 422 and "whole scan area" in response.json()["detail"]
    response = client.post("/api/v1/predict", files=files, data={"box": "100,100,10"})
    assert response.status_code == 422 and "x0,y0,x1,y1" in response.json()["detail"]


def test_predict_dicom(client, tmp_path):
    data = make_dicom(tmp_path / "a.dcm").read_bytes()
    assert client.post("/api/v1/predict", files={"file": ("a.dcm", data, "application/dicom")}).status_code == 200


@pytest.mark.parametrize(
    "name, payload, status, message",
    [
        ("empty.jpg", b"", 400, "empty upload"),
        ("notes.jpg", b"this is a text file renamed to .jpg", 415, "not an image"),
        ("cut.jpg", None, 422, "corrupt or truncated"),
        (".", None, 200, ""),
        ("..", None, 200, ""),
        ("tiny.png", "tiny", 422, "too small"),
        ("grey+alpha.png", "LA", 200, ""),
    ],
)
def test_bad_uploads_get_json_errors_and_the_server_stays_up(client, name, payload, status, message):
    buffer = io.BytesIO()
    if payload is None:  # a JPEG, truncated unless the name is the problem
        Image.fromarray(ultrasound_image(0, True)).save(buffer, format="JPEG")
        payload = buffer.getvalue()[: 3000 if name == "cut.jpg" else None]
    elif payload == "tiny":
        Image.new("L", (2, 2), 90).save(buffer, format="PNG")
        payload = buffer.getvalue()
    elif payload == "LA":
        Image.fromarray(ultrasound_image(0, True)).convert("LA").save(buffer, format="PNG")
        payload = buffer.getvalue()
    response = client.post("/api/v1/predict", files={"file": (name, payload, "image/jpeg")})
    assert response.status_code == status, response.text
    assert status == 200 or message in response.json()["detail"]
    assert client.get("/health").status_code == 200


def test_huge_dimensions_and_oversized_uploads(client):
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, format="PNG")  # 81 Mpixel, compresses to a few hundred kB
    response = client.post("/api/v1/predict", files={"file": ("bomb.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 413 and "pixel limit" in response.json()["detail"]
    big = b"\x89PNG\r\n\x1a\n" + b"0" * (3 * 1024 * 1024)
    assert client.post("/api/v1/predict", files={"file": ("big.png", big, "image/png")}).status_code == 413


def test_dicom_without_pixels(client, tmp_path):
    data = make_dicom(tmp_path / "n.dcm", pixels=False).read_bytes()
    response = client.post("/api/v1/predict", files={"file": ("n.dcm", data, "application/dicom")})
    assert response.status_code == 422 and "no pixel data" in response.json()["detail"]


def test_missing_file_field(client):
    assert client.post("/api/v1/predict").status_code == 422


def test_concurrent_requests_share_one_model(client):
    payload = png_bytes(ultrasound_image(1, False))
    results = []

    def call():
        results.append(client.post("/api/v1/predict", files={"file": ("a.png", payload, "image/png")}).json()["probability_malignant"])

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and max(results) - min(results) < 1e-6


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REAL_IMAGE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ddti" / "100_1.jpg"


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium and chromium-driver are not installed")
def test_page_in_headless_chromium(tiny_run, tmp_path):
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    image = REAL_IMAGE if REAL_IMAGE.exists() else tmp_path / "synthetic.png"
    if not REAL_IMAGE.exists():
        Image.fromarray(ultrasound_image(0, True)).save(image)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1366,800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "file").send_keys(str(image.resolve()))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "result-prob").text.endswith("%"))
        assert driver.find_element(By.ID, "result-decision").text.lower() in ("benign", "malignant")
        assert driver.find_element(By.ID, "overlay-img").get_attribute("src").startswith("data:image/png;base64,")
        screenshot_dir = Path(os.environ.get("THYRONET_SCREENSHOT_DIR", tmp_path))  # to look at it
        assert driver.save_screenshot(str(screenshot_dir / "page.png"))
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)


def test_a_request_out_of_time_gets_504_and_does_not_hold_the_model(tiny_run):
    from thyronet.apps.serve.app import RequestExpired

    # long enough for the last request on a loaded 2-core machine (0.5 s was not), short enough
    # that waiting for the held lock costs the suite little
    app = create_app(tiny_run, ServiceSettings(timeout_s=5.0))
    service, client = app.state.service, TestClient(app)
    payload = png_bytes(ultrasound_image(0, True))
    with service.lock:  # another request holds the model past this one's time
        response = client.post("/api/v1/predict", files={"file": ("late.png", payload, "image/png")})
    assert response.status_code == 504 and "longer than" in response.json()["detail"]
    with pytest.raises(RequestExpired):  # a request whose client gave up stops before the model
        service.predict(payload, "late.png", deadline=time.monotonic() - 1)
    assert service.lock.acquire(blocking=False)  # and left the model free
    service.lock.release()
    assert client.post("/api/v1/predict", files={"file": ("ok.png", payload, "image/png")}).status_code == 200


def test_ready_says_the_model_is_loaded(client):
    body = client.get("/ready").json()
    assert body["ready"] is True and body["model"] == "resnet18" and body["worker_pid"] == os.getpid()


THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")


@pytest.mark.skipif(THYRONET is None, reason="the thyronet console script is not installed")
def test_two_worker_processes_answer_behind_one_port(tiny_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([THYRONET, "serve", str(tiny_run), "--port", str(port), "--workers", "2", "--no-explain"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the server never became ready")
        workers = [p for p in Path("/proc").glob("[0-9]*") if _parent(p) == server.pid]
        assert len(workers) >= 2  # uvicorn's worker processes (besides its helpers)
        payload = png_bytes(ultrasound_image(0, True))
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: httpx.post(f"http://127.0.0.1:{port}/api/v1/predict", timeout=60,
                                                         files={"file": (f"{i}.png", payload, "image/png")}), range(8)))
        assert {a.status_code for a in answers} == {200}
        assert len({round(a.json()["probability_malignant"], 6) for a in answers}) == 1  # every worker, one model
    finally:
        server.terminate()
        server.wait(timeout=30)


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
