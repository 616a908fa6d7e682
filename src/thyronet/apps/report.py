"""A self-contained HTML report of one prediction run (images embedded, no external files)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from thyronet import __version__
from thyronet.inference.answers import Answer, size_note, tirads_note
from thyronet.inference.backends import Backend
from thyronet.inference.nodules import NoduleAnswer, nodule_acr_note
from thyronet.io import write_text_atomic

DISCLAIMER = (
    "thyronet is a research tool and an aid to the physician, not a diagnosis. Its probability "
    "comes from a model trained on a small public data set (DDTI) whose labels are TIRADS "
    "categories, not pathology; decide with the full clinical picture."
)


def png_data_uri(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def decision_class(decision: str | None) -> str:
    """The CSS class that colours a decision."""
    return "mal" if decision == "malignant" else "ben"


def nodule_rows(nodules: Sequence[NoduleAnswer], pictures: dict[int, np.ndarray | None]) -> list[str]:
    """One row per nodule: its combined answer, then its views side by side, each with its own
    probability (``pictures``: each answer's frame with region and contour, by ``id``)."""
    rows = []
    for nodule in nodules:
        views = []
        for view in nodule.views:
            caption = html.escape(view.prediction.source_file.name)
            if view.prediction.error:
                views.append(f"<figure><figcaption>{caption}: <span class='err'>not answered</span></figcaption></figure>")
                continue
            picture = pictures.get(id(view))
            shown = " (the clearest view)" if view is nodule.shown else ""
            image = "" if picture is None else f"<img class='view' src='{png_data_uri(picture)}' alt='view {caption}'>"
            views.append(f"<figure>{image}<figcaption>{caption}: {view.prediction.probability:.2f}{shown}</figcaption></figure>")
        if nodule.probability is None:
            answer = "<td colspan='2' class='err'>no view could be answered</td>"
        else:
            answer = f"<td class='{decision_class(nodule.decision)}'>{nodule.decision}</td><td>{nodule.probability:.2f}</td>"
        acr = "" if nodule.acr is None else f"<br><small>{html.escape(nodule_acr_note(nodule.acr))}</small>"
        rows.append(f"<tr><td>{html.escape(nodule.nodule)}<br><small>{len(nodule.answered)} of {len(nodule.views)} "
                    f"views answered</small>{acr}</td><td class='views'>{''.join(views)}</td>{answer}</tr>")
    return rows


def write_report(
    path: Path, backend: Backend, items: Sequence[tuple[Answer, np.ndarray | None, np.ndarray | None]],
    nodules: Sequence[NoduleAnswer] = (),
) -> Path:
    """``items``: (answer, frame with region and nodule contour, the same with Grad-CAM or None);
    ``nodules``: the same answers combined per nodule (``predict --group-by``), shown first, each
    nodule's views side by side."""
    calibration = backend.calibration
    nodule_section = ""
    if nodules:
        pictures = {id(answer): plain for answer, plain, _ in items}
        nodule_section = f"""<h2>Nodules</h2>
<p>Each nodule's probability is the mean of its views' (the rule by which cases are scored), its decision that mean
against the operating threshold.</p>
<table><tr><th>nodule</th><th>its views (region seen yellow, nodule green) and each view's P(malignant)</th>
<th>decision</th><th>P(malignant)</th></tr>
{''.join(nodule_rows(nodules, pictures))}
</table>
<h2>Images</h2>"""
    rows = []
    for answer, plain, blended in items:
        prediction = answer.prediction
        name = html.escape(prediction.input)
        if prediction.error:
            rows.append(f"<tr><td>{name}</td><td colspan='3' class='err'>could not be read: {html.escape(prediction.error)}</td></tr>")
            continue
        images = f"<img src='{png_data_uri(plain)}' alt='input with the region the model looked at'>"
        if blended is not None:
            images += f"<img src='{png_data_uri(blended)}' alt='Grad-CAM overlay'>"
        details = f"<br><small>looked at: {html.escape(str(prediction.region))}</small>"
        if prediction.warning:
            details += f"<br><span class='err'>warning: this image {html.escape(prediction.warning)}</span>"
        if prediction.size is not None:
            calibrated = "" if prediction.size.unit == "mm" else " (no calibration: pixels)"
            details += f"<br><small>outline: {html.escape(size_note(prediction.size))}{calibrated}</small>"
        if prediction.descriptors:
            details += (f"<br><small>predicted: {html.escape(prediction.description or 'no descriptor assessed')}; "
                        f"{html.escape(tirads_note(prediction))}</small>")
            details += (f"<br><small>ACR TI-RADS 2017: {html.escape(prediction.recommendation.action)} "
                        f"({html.escape(prediction.recommendation.reason)}), derived from predictions</small>")
        rows.append(
            f"<tr><td>{name}{details}</td><td>{images}</td><td class='{decision_class(prediction.decision)}'>{prediction.decision}</td>"
            f"<td>{prediction.probability:.2f}</td></tr>"
        )
    sensitivity = "n/a" if calibration.val_sensitivity is None else f"{calibration.val_sensitivity:.2f}"
    specificity = "n/a" if calibration.val_specificity is None else f"{calibration.val_specificity:.2f}"
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thyronet report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 6px 10px; vertical-align: middle; }}
img {{ width: 360px; margin-right: 6px; }}
.mal {{ color: #b00020; font-weight: bold; }} .ben {{ color: #1b5e20; font-weight: bold; }} .err {{ color: #b00020; }}
.note {{ background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.6em 1em; max-width: 60em; }}
figure {{ display: inline-block; margin: 0 6px 0 0; }} img.view {{ width: 200px; }} td.views {{ white-space: nowrap; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }}
</style></head><body>
<h1>thyronet prediction report</h1>
<p class="note">{html.escape(DISCLAIMER)}</p>
{nodule_section or "<h2>Predictions</h2>"}
<table><tr><th>input</th><th>region seen (yellow), nodule (green) / Grad-CAM</th><th>decision</th><th>P(malignant)</th></tr>
{''.join(rows)}
</table>
<h2>Model and provenance</h2>
<dl>
<dt>model</dt><dd>{html.escape(backend.name)} ({backend.runtime})</dd>
<dt>file</dt><dd>{html.escape(str(backend.source))}</dd>
<dt>operating threshold</dt><dd>{calibration.threshold:.3f}, chosen on validation for sensitivity &ge; {calibration.target_sensitivity}
 (validation sensitivity {sensitivity}, specificity {specificity})</dd>
<dt>calibration</dt><dd>temperature {calibration.temperature:.3f}, bias {calibration.bias:+.3f}, fitted on validation</dd>
<dt>training data fingerprint</dt><dd>{html.escape(str(backend.info.get('data_fingerprint')))}</dd>
<dt>thyronet</dt><dd>{__version__}, report made {datetime.now(UTC).isoformat(timespec='seconds')}</dd>
</dl></body></html>
"""
    write_text_atomic(path, document)
    return path
