"""The answer for a DICOM image as DICOM objects a PACS stores beside it (written with highdicom):

* a Segmentation (SEG) of the nodule mask, referencing the source image;
* a Comprehensive 3D SR holding a TID 1500 measurement report: the nodule's contour on the image,
  its long and short axes and area (mm where the image is calibrated, else pixels), the
  calibrated probability of malignancy with the operating threshold and the decision, the
  predicted descriptors, the ACR TI-RADS points and level they imply and the 2017 ACR
  recommendation for that level and size, and the model's name and version; when the image is one
  view of a nodule answered across its views (``predict --group-by``, ``dicom-node --per-series``),
  also the nodule's probability (the mean of its views') and decision, and every view's SR
  carries the same tracking identifier and UID, DICOM's way of saying "the same finding";
* on request, a Secondary Capture: the frame with the region seen and the nodule's contour drawn
  in, and the answer written across its top (burned-in), for viewers that show neither SEG nor SR.

Values the DICOM vocabularies have no code for (the probability, the decision, TI-RADS levels and
recommendations) use the private coding scheme ``99THYRONET``. Every derived value is labelled as
coming from the model: this is decision support, not a radiologist's report.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from thyronet import __version__
from thyronet.apps.explain import frame_overlay
from thyronet.data.dicom import dataset_spacing_mm
from thyronet.errors import DataError
from thyronet.inference.answers import Answer
from thyronet.inference.measure import NoduleFindings, findings
from thyronet.inference.nodules import NoduleAnswer
from thyronet.io import atomic_path

SCHEME = "99THYRONET"
PROBABILITY = Code("MALIGNANCY_P", SCHEME, "Probability of malignancy (model)")
THRESHOLD = Code("THRESHOLD", SCHEME, "Operating threshold (model)")
DECISION = Code("DECISION", SCHEME, "Decision at the operating threshold (model)")
NODULE_PROBABILITY = Code("NODULE_P", SCHEME, "Probability of malignancy, nodule: mean of its views (model)")
NODULE_DECISION = Code("NODULE_DECISION", SCHEME, "Decision for the nodule at the threshold (model)")
VIEWS = Code("VIEWS", SCHEME, "Views of the nodule answered")
TIRADS_POINTS = Code("TIRADS_POINTS", SCHEME, "ACR TI-RADS points from predicted descriptors")
TIRADS_LEVEL = Code("TIRADS_LEVEL", SCHEME, "ACR TI-RADS level from predicted descriptors")
RECOMMENDATION = Code("ACR_RECOMMENDATION", SCHEME, "ACR TI-RADS 2017 recommendation (derived)")
LONG_AXIS, SHORT_AXIS = Code("103339001", "SCT", "Long axis"), Code("103340004", "SCT", "Short axis")
AREA = Code("42798000", "SCT", "Area")
THYROID_US = Code("241527007", "SCT", "Ultrasonography of thyroid")
UNITLESS = Code("1", "UCUM", "no units")


def _code(value: str) -> Code:
    return Code(value.upper().replace(" ", "_").replace("-", "_")[:16], SCHEME, value)


def write_dicom_results(source_path: Path, answer: Answer, out: Path, model_name: str,
                        secondary_capture: bool = False, nodule: NoduleAnswer | None = None) -> list[Path]:
    """SEG (when a nodule mask was predicted), SR and, with ``secondary_capture``, the overlay
    picture for one answered DICOM image, in ``out``; ``nodule``: the nodule this image is a view
    of, whose combined answer its SR then carries too."""
    try:
        source = pydicom.dcmread(source_path)
    except Exception as error:  # pydicom raises many kinds
        raise DataError(source_path, f"not a readable DICOM file ({error})") from None
    if int(getattr(source, "NumberOfFrames", 1) or 1) > 1:
        raise DataError(source_path, "DICOM SR and SEG are written for single-frame images only")
    found = findings(answer, dataset_spacing_mm(source))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    mask = answer.prepared.nodule_mask if answer.prepared is not None else None
    if mask is not None and mask.any():
        written.append(_save(_segmentation(source, mask > 0, model_name), out / f"{source.SOPInstanceUID}.seg.dcm"))
    written.append(_save(_report(source, answer, found, model_name, nodule), out / f"{source.SOPInstanceUID}.sr.dcm"))
    if secondary_capture and answer.prepared is not None:
        written.append(_save(_capture(source, answer, model_name), out / f"{source.SOPInstanceUID}.sc.dcm"))
    return written


def _capture(source: pydicom.Dataset, answer: Answer, model_name: str) -> hd.sc.SCImage:
    """The frame as the model saw it (region yellow, nodule green) with its answer burned in."""
    picture = frame_overlay(answer.frame, answer.prepared)
    prediction = answer.prediction
    caption = (f"thyronet {model_name}: P(malignant) {prediction.probability:.2f}, {prediction.decision} "
               "- decision support, not a diagnosis")
    scale = max(0.35, picture.shape[1] / 1600)  # legible on a small frame, not oversized on a large one
    height = int(28 * scale) + 8
    cv2.rectangle(picture, (0, 0), (picture.shape[1] - 1, height), (0, 0, 0), -1)
    cv2.putText(picture, caption, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    capture = hd.sc.SCImage.from_ref_dataset(
        source, picture, hd.PhotometricInterpretationValues.RGB, 8, hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(), series_number=9003, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="thyronet", patient_orientation=("L", "F"), series_description=f"thyronet {model_name} overlay")
    # highdicom asks for an orientation; the picture has the source's, as it has its laterality
    # (both Type 2: empty where unknown)
    capture.PatientOrientation = source.get("PatientOrientation", "")
    capture.Laterality = source.get("Laterality", "")
    capture.BurnedInAnnotation = "YES"
    return capture


def _save(dataset: pydicom.Dataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


def _segmentation(source: pydicom.Dataset, mask: np.ndarray, model_name: str) -> hd.seg.Segmentation:
    algorithm = hd.AlgorithmIdentificationSequence(name="thyronet", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="thyroid nodule", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=mask[None].astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=9001, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="thyronet", manufacturer_model_name=model_name, software_versions=__version__,
        device_serial_number="none")
    if "PatientOrientation" in source:  # type 2C in the General Image module of an image without a frame of reference
        seg.PatientOrientation = source.PatientOrientation
    return seg


def _contour(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    points = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float32)
    return np.vstack([points, points[:1]])  # a closed polyline


def _tracking(nodule: NoduleAnswer | None) -> hd.sr.TrackingIdentifier:
    """One finding's identifier: the same UID for every view of a nodule (derived from its key, so
    that each view's SR names it alike however they were written), else a fresh one."""
    if nodule is None:
        return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="nodule 1")
    return hd.sr.TrackingIdentifier(uid=generate_uid(entropy_srcs=["thyronet nodule", nodule.nodule]),
                                    identifier=f"nodule {nodule.nodule}"[:64])


def _report(source: pydicom.Dataset, answer: Answer, found: NoduleFindings, model_name: str,
            nodule: NoduleAnswer | None = None) -> hd.sr.Comprehensive3DSR:
    prediction = answer.prediction
    algorithm = hd.sr.AlgorithmIdentification(name=f"thyronet {model_name}", version=__version__)
    unit = codes.UCUM.Millimeter if found.measurement and found.measurement.unit == "mm" else Code("{pixels}", "UCUM", "pixels")
    area_unit = Code("mm2", "UCUM", "square millimeter") if found.measurement and found.measurement.unit == "mm" else unit
    measurements = [hd.sr.Measurement(name=PROBABILITY, value=float(prediction.probability), unit=UNITLESS, algorithm_id=algorithm),
                    hd.sr.Measurement(name=THRESHOLD, value=float(prediction.threshold), unit=UNITLESS, algorithm_id=algorithm)]
    if found.measurement is not None:
        size = found.measurement
        measurements += [hd.sr.Measurement(name=LONG_AXIS, value=round(size.long_axis, 2), unit=unit, algorithm_id=algorithm),
                         hd.sr.Measurement(name=SHORT_AXIS, value=round(size.short_axis, 2), unit=unit, algorithm_id=algorithm),
                         hd.sr.Measurement(name=AREA, value=round(size.area, 2), unit=area_unit, algorithm_id=algorithm)]
    if prediction.tirads_points is not None:
        measurements.append(hd.sr.Measurement(name=TIRADS_POINTS, value=prediction.tirads_points, unit=UNITLESS,
                                              algorithm_id=algorithm))
    evaluations = [hd.sr.QualitativeEvaluation(DECISION, _code(prediction.decision))]
    for name in ("composition", "echogenicity", "margins", "calcifications"):
        value = getattr(prediction, name)
        if value is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(Code(name.upper(), SCHEME, f"{name} (predicted)"), _code(value)))
    if prediction.tirads_level:
        evaluations.append(hd.sr.QualitativeEvaluation(TIRADS_LEVEL, _code(prediction.tirads_level)))
    if found.recommendation is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(RECOMMENDATION, _code(found.recommendation.action)))
    if nodule is not None and nodule.probability is not None:
        measurements += [hd.sr.Measurement(name=NODULE_PROBABILITY, value=round(nodule.probability, 6), unit=UNITLESS,
                                           algorithm_id=algorithm),
                         hd.sr.Measurement(name=VIEWS, value=len(nodule.answered), unit=UNITLESS, algorithm_id=algorithm)]
        evaluations.append(hd.sr.QualitativeEvaluation(NODULE_DECISION, _code(nodule.decision)))
    mask = answer.prepared.nodule_mask if answer.prepared is not None else None
    tracking = _tracking(nodule)
    if mask is not None and mask.any():
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=_contour(mask > 0),
                                   source_image=hd.sr.SourceImageForRegion.from_source_image(source))
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Nodule,
            measurements=measurements, qualitative_evaluations=evaluations, algorithm_id=algorithm)
    else:  # no nodule outlined: the answer concerns the image as a whole
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, finding_type=codes.SCT.Nodule, measurements=measurements,
            qualitative_evaluations=evaluations, source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
            algorithm_id=algorithm)
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name="thyronet",
                                                                                   model_name=model_name))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=THYROID_US, imaging_measurements=[group],
                                     title=codes.cid7021.ImagingMeasurementReport)
    return hd.sr.Comprehensive3DSR(evidence=[source], content=report[0], series_number=9002, series_instance_uid=hd.UID(),
                                   sop_instance_uid=hd.UID(), instance_number=1, manufacturer="thyronet",
                                   is_complete=True, is_final=False)
