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

Concepts DICOM and SNOMED CT have codes for use them (probability of cancer DCM 111047, the CAD
operating point DCM 111071, recommendation DCM 121075, the thyroid as finding site SCT 69748006,
nodule SCT 27925004); values they have no code for (the decision, descriptor values, TI-RADS
points, levels and recommendations) use the private coding scheme ``99THYRONET``, declared in the
SR's Coding Scheme Identification Sequence, with code values in full. Every derived value is
labelled as coming from the model: this is decision support, not a radiologist's report.

What real sources lack is coped with: absent Type 2 attributes of the patient and study modules
are written empty (as the standard asks) rather than refused; a source the SEG cannot reference
(no way to place the mask) still gets its SR, and a multi-frame source (a cine) gets an SR whose
region refers to the frame that was read (the first), with the reason for the missing SEG logged
in one line. The device observer UID is one per installation: derived from
``$THYRONET_DEVICE_UID`` when set, else from the host's name.
"""

from __future__ import annotations

import logging
import os
import platform
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
from thyronet.data.dicom import frame_count
from thyronet.data.readstore import Read, caliper_mm
from thyronet.data.tirads import Assessment, Recommendation
from thyronet.errors import DataError
from thyronet.inference.answers import Answer
from thyronet.inference.measure import largest_contour
from thyronet.inference.nodules import NoduleAnswer
from thyronet.io import atomic_path

log = logging.getLogger(__name__)
SCHEME = "99THYRONET"
PROBABILITY = codes.DCM.ProbabilityOfCancer  # DCM 111047
THRESHOLD = codes.DCM.CADOperatingPoint  # DCM 111071
DECISION = Code("DECISION", SCHEME, "Decision at the operating threshold (model)")
NODULE_PROBABILITY = Code("NODULE_P", SCHEME, "Probability of malignancy, nodule: mean of its views (model)")
NODULE_DECISION = Code("NODULE_DECISION", SCHEME, "Decision for the nodule at the threshold (model)")
VIEWS = Code("VIEWS", SCHEME, "Views of the nodule answered")
TIRADS_POINTS = Code("TIRADS_POINTS", SCHEME, "ACR TI-RADS points from predicted descriptors and outline")
TIRADS_LEVEL = Code("TIRADS_LEVEL", SCHEME, "ACR TI-RADS level from predicted descriptors and outline")
SIGNED_POINTS = Code("SIGNED_POINTS", SCHEME, "ACR TI-RADS points, signed read")
SIGNED_LEVEL = Code("SIGNED_LEVEL", SCHEME, "ACR TI-RADS level, signed read")
NODULE_LEVEL = Code("NODULE_TIRADS_LEVEL", SCHEME, "ACR TI-RADS level, nodule across its views (model)")
NODULE_RECOMMENDATION = Code("NODULE_RECOMMEND", SCHEME, "ACR TI-RADS recommendation, nodule across its views (model)")
RECOMMENDATION = codes.DCM.Recommendation  # DCM 121075: its value says that it is ACR TI-RADS's
LONG_AXIS, SHORT_AXIS = Code("103339001", "SCT", "Long axis"), Code("103340004", "SCT", "Short axis")
AREA = Code("42798000", "SCT", "Area")
THYROID_US = Code("241527007", "SCT", "Ultrasonography of thyroid")
THYROID = Code("69748006", "SCT", "Thyroid structure")
UNITLESS = Code("1", "UCUM", "no units")
# Type 2 attributes of the patient, study and series modules that highdicom copies from the source:
# empty where a real file leaves them out
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                "AccessionNumber", "ReferringPhysicianName")
TYPE1_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


RETIRED_ULTRASOUND = {"1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
                      "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)"}


# values and descriptor names that DICOM (CID 6000s, the ultrasound and CAD vocabularies) or SNOMED CT codes
STANDARD_CODES: dict[str, Code] = {
    "benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant, "hypoechoic": codes.DCM.Hypoechoic,
    "hyperechoic": codes.DCM.Hyperechoic, "isoechoic": codes.DCM.Isoechoic, "anechoic": codes.DCM.Anechoic,
    "macrolobulated": codes.DCM.Lobulated, "spiculated": codes.SCT.Irregular,
    "echogenicity": codes.DCM.Echogenicity, "margins": codes.DCM.Margins,
}


def _code(value: str) -> Code:
    """The standard code of a value where there is one, else a private code, its code value in full
    (a long code value past 16 characters)."""
    if value in STANDARD_CODES:
        return STANDARD_CODES[value]
    return Code(value.upper().replace(" ", "_").replace("-", "_").replace("+", "_").replace(",", ""), SCHEME, value)


def device_uid() -> str:
    """The device observer UID of this installation: the same in every SR it writes."""
    return generate_uid(entropy_srcs=["thyronet device", os.environ.get("THYRONET_DEVICE_UID") or platform.node()])


def _complete(source: pydicom.Dataset, path: Path) -> pydicom.Dataset:
    """The source with its absent Type 2 attributes present and empty; one whose UIDs are missing
    or malformed cannot be referenced, and is an error naming the file."""
    missing = [name for name in TYPE1_REQUIRED if not str(source.get(name, "") or "")]
    if missing:
        raise DataError(path, f"has no {', '.join(missing)}: results cannot reference it")
    invalid = [name for name in TYPE1_REQUIRED if not pydicom.uid.UID(str(source.get(name))).is_valid]
    if invalid:  # a UID also names the result files: never let one reach the file system unchecked
        raise DataError(path, f"{', '.join(invalid)} is not a valid DICOM UID")
    if str(source.SOPClassUID) in RETIRED_ULTRASOUND:  # highdicom knows no IOD for them: it cannot reference one
        raise DataError(path, f"{RETIRED_ULTRASOUND[str(source.SOPClassUID)]} ({source.SOPClassUID}), a class retired from "
                              "the standard: no SR or SEG can reference it (answered in the CSV only)")
    for name in TYPE2_COPIED:
        if name not in source:
            setattr(source, name, "")
    for element in source:  # dates and times in the ACR-NEMA style (1994.11.05, 11:20:00) as DICOM writes them
        if element.VR in ("DA", "TM") and element.VM == 1 and isinstance(element.value, str):
            element.value = element.value.replace(".", "") if element.VR == "DA" else element.value.replace(":", "")
    return source


def write_dicom_results(source_path: Path, answer: Answer, out: Path, model_name: str,
                        secondary_capture: bool = False, nodule: NoduleAnswer | None = None,
                        name: str | None = None) -> list[Path]:
    """SEG (when a nodule mask was predicted), SR and, with ``secondary_capture``, the overlay
    picture for one answered DICOM image, in ``out``; ``nodule``: the nodule this image is a view
    of, whose combined answer its SR then carries too. The files are named ``name`` (the node
    names them itself, never by a received UID), else by the source's SOP Instance UID."""
    try:
        source = pydicom.dcmread(source_path)
        frames = frame_count(source)
    except Exception as error:  # pydicom raises many kinds
        raise DataError(source_path, f"not a readable DICOM file ({error})") from None
    source = _complete(source, source_path)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or str(source.SOPInstanceUID)
    written = []
    mask = answer.prepared.nodule_mask if answer.prepared is not None else None
    if mask is not None and mask.any():
        if frames > 1:
            log.warning("%s: a cine of %d frames: frame 1 answered; SR written, no SEG (a SEG of one frame of a "
                        "multi-frame image needs its frame's position, which an ultrasound cine does not give)",
                        source.SOPInstanceUID, frames)
        else:
            try:
                written.append(_save(_segmentation(source, mask > 0, model_name), out / f"{stem}.seg.dcm"))
            except (ValueError, AttributeError, TypeError) as error:  # highdicom's refusals of a source it cannot reference
                log.warning("%s: no SEG written (%s); the SR holds the outline", source.SOPInstanceUID, error)
    written.append(_save(_report(source, answer, model_name, nodule, frames), out / f"{stem}.sr.dcm"))
    if secondary_capture and answer.prepared is not None:
        written.append(_save(_capture(source, answer, model_name), out / f"{stem}.sc.dcm"))
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
    # highdicom asks for an orientation; the picture has the source's (Type 2: empty where unknown),
    # as it has its laterality; without one, Image Laterality U (the thyroid is an unpaired organ)
    capture.PatientOrientation = source.get("PatientOrientation", "")
    if source.get("Laterality"):
        capture.Laterality = source.Laterality
    else:
        capture.pop("Laterality", None)
        capture.ImageLaterality = source.get("ImageLaterality") or "U"
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
    seg.SeriesDescription = f"thyronet {model_name} nodule segmentation"
    if "PatientOrientation" in source:  # type 2C in the General Image module of an image without a frame of reference
        seg.PatientOrientation = source.PatientOrientation
    return seg


def _closed(points: np.ndarray) -> np.ndarray:
    """A closed polyline: the first point repeated at the end."""
    return np.vstack([points, points[:1]])


def _tracking(nodule: NoduleAnswer | None) -> hd.sr.TrackingIdentifier:
    """One finding's identifier: the same UID for every view of a nodule (derived from its key, so
    that each view's SR names it alike however they were written), else a fresh one."""
    if nodule is None:
        return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="nodule 1")
    return hd.sr.TrackingIdentifier(uid=generate_uid(entropy_srcs=["thyronet nodule", nodule.nodule]),
                                    identifier=f"nodule {nodule.nodule}"[:64])


def _report(source: pydicom.Dataset, answer: Answer, model_name: str, nodule: NoduleAnswer | None = None,
            frames: int = 1) -> hd.sr.Comprehensive3DSR:
    prediction, size = answer.prediction, answer.prediction.size
    algorithm = hd.sr.AlgorithmIdentification(name=f"thyronet {model_name}", version=__version__)
    unit = codes.UCUM.Millimeter if size and size.unit == "mm" else Code("{pixels}", "UCUM", "pixels")
    area_unit = Code("mm2", "UCUM", "square millimeter") if size and size.unit == "mm" else unit
    measurements = [hd.sr.Measurement(name=PROBABILITY, value=float(prediction.probability), unit=UNITLESS, algorithm_id=algorithm),
                    hd.sr.Measurement(name=THRESHOLD, value=float(prediction.threshold), unit=UNITLESS, algorithm_id=algorithm)]
    if size is not None:
        measurements += [hd.sr.Measurement(name=LONG_AXIS, value=round(size.long_axis, 2), unit=unit, algorithm_id=algorithm),
                         hd.sr.Measurement(name=SHORT_AXIS, value=round(size.short_axis, 2), unit=unit, algorithm_id=algorithm),
                         hd.sr.Measurement(name=AREA, value=round(size.area, 2), unit=area_unit, algorithm_id=algorithm)]
    if prediction.tirads_points is not None:
        measurements.append(hd.sr.Measurement(name=TIRADS_POINTS, value=prediction.tirads_points, unit=UNITLESS,
                                              algorithm_id=algorithm))
    evaluations = [hd.sr.QualitativeEvaluation(DECISION, _code(prediction.decision))]
    for name, descriptor in prediction.descriptors.items():
        concept = STANDARD_CODES.get(name) or Code(name.upper(), SCHEME, f"{name} (predicted)")
        evaluations.append(hd.sr.QualitativeEvaluation(concept, _code(descriptor.shown)))
    if prediction.acr is not None:
        evaluations += _acr_evaluations(prediction.acr, prediction.recommendation)
    if nodule is not None and nodule.probability is not None:
        measurements += [hd.sr.Measurement(name=NODULE_PROBABILITY, value=round(nodule.probability, 6), unit=UNITLESS,
                                           algorithm_id=algorithm),
                         hd.sr.Measurement(name=VIEWS, value=len(nodule.answered), unit=UNITLESS, algorithm_id=algorithm)]
        evaluations.append(hd.sr.QualitativeEvaluation(NODULE_DECISION, _code(nodule.decision)))
    if nodule is not None and nodule.acr is not None:  # one level and recommendation for the nodule across its views
        evaluations += [hd.sr.QualitativeEvaluation(NODULE_LEVEL, _code(nodule.acr.assessment.level or "incomplete")),
                        hd.sr.QualitativeEvaluation(NODULE_RECOMMENDATION, _code(nodule.acr.recommendation.action))]
    mask = answer.prepared.nodule_mask if answer.prepared is not None else None
    outline = _closed(largest_contour(mask)) if mask is not None and mask.any() else None
    group = _group(source, outline, _tracking(nodule), measurements, evaluations, algorithm, frames)
    observer = hd.sr.ObservationContext(observer_device_context=_device_observer(model_name))
    sr = _measurement_report(source, group, observer, series_number=9002, final=False)
    sr.SeriesDescription = f"thyronet {model_name} nodule report (decision support)"
    return sr


def _group(source: pydicom.Dataset, outline: np.ndarray | None, tracking: hd.sr.TrackingIdentifier,
           measurements: list, evaluations: list, algorithm: hd.sr.AlgorithmIdentification | None, frames: int = 1):
    """The nodule's measurement group: on its outline (a closed polyline) where there is one, else on the image."""
    if outline is not None:
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline,
                                   source_image=hd.sr.SourceImageForRegion.from_source_image(
                                       source, referenced_frame_numbers=[1] if frames > 1 and _multiframe(source) else None))
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Nodule,
            finding_sites=[_finding_site(source)], measurements=measurements, qualitative_evaluations=evaluations,
            algorithm_id=algorithm)
    return hd.sr.MeasurementsAndQualitativeEvaluations(  # no nodule outlined: the answer concerns the image as a whole
        tracking_identifier=tracking, finding_type=codes.SCT.Nodule, finding_sites=[_finding_site(source)],
        measurements=measurements, qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)], algorithm_id=algorithm)


def _multiframe(source: pydicom.Dataset) -> bool:
    """Whether highdicom takes the source for a multi-frame image (some single-frame classes carry
    a NumberOfFrames: a region on them names no frame)."""
    try:
        hd.sr.SourceImageForRegion.from_source_image(source, referenced_frame_numbers=[1])
    except TypeError:
        return False
    return True


def _device_observer(model_name: str) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=device_uid(), name="thyronet",
                                                                                   model_name=model_name))


def _measurement_report(source: pydicom.Dataset, group, observation: hd.sr.ObservationContext, series_number: int,
                        final: bool, verifier: str | None = None) -> hd.sr.Comprehensive3DSR:
    report = hd.sr.MeasurementReport(observation_context=observation, procedure_reported=THYROID_US,
                                     imaging_measurements=[group], title=codes.cid7021.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(evidence=[source], content=report[0], series_number=series_number,
                                 series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(), instance_number=1,
                                 manufacturer="thyronet", is_complete=True, is_final=final, is_verified=verifier is not None,
                                 verifying_observer_name=verifier, verifying_organization="thyronet reading" if verifier else None)
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]
    return sr


def write_signed_report(read: Read, out: Path) -> Path:
    """The SR of a signed read of a DICOM image: the radiologist as person observer and verifier,
    thyronet (the proposing model) as device observer; the confirmed outline, calipers, ACR
    categories, level and recommendation; for each category whether the radiologist kept the
    model's proposal or changed it; the model's probability as secondary information. Named by
    the read's version, in ``out``."""
    try:
        source = pydicom.dcmread(read.image)
    except Exception as error:  # pydicom raises many kinds
        raise DataError(read.image, f"not a readable DICOM file ({error})") from None
    source = _complete(source, read.image)
    assessment, recommendation = read.assessment()
    model_name = str(read.model.get("name") or "model")
    unit = codes.UCUM.Millimeter if read.source.spacing else Code("{pixels}", "UCUM", "pixels")
    measurements = []
    for name, concept in (("long", LONG_AXIS), ("short", SHORT_AXIS)):
        length = caliper_mm((read.confirmed.get("calipers") or {}).get(name), read.source.spacing or (1.0, 1.0))
        if length is not None:
            measurements.append(hd.sr.Measurement(name=concept, value=round(length, 2), unit=unit))
    if assessment.points is not None:
        measurements.append(hd.sr.Measurement(name=SIGNED_POINTS, value=assessment.points, unit=UNITLESS))
    if read.proposal.get("probability") is not None:
        algorithm = hd.sr.AlgorithmIdentification(name=f"thyronet {model_name}", version=__version__)
        measurements.append(hd.sr.Measurement(name=PROBABILITY, value=float(read.proposal["probability"]), unit=UNITLESS,
                                              algorithm_id=algorithm))
    changed = set(read.changed())
    evaluations = _acr_evaluations(assessment, recommendation, "confirmed by the radiologist", SIGNED_LEVEL)
    for name in assessment.values:
        origin = "changed by the radiologist" if f"categories.{name}" in changed else "as proposed by the model"
        evaluations.append(hd.sr.QualitativeEvaluation(Code(f"ORIGIN_{name.upper().replace(' ', '_')}", SCHEME,
                                                            f"ACR TI-RADS {name}: origin"), _code(origin)))
    outline = read.confirmed.get("outline")
    polyline = None if not outline else _closed(np.array(outline, np.float32))
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(entropy_srcs=["thyronet read", read.read]), identifier=f"read {read.read}")
    radiologist = f"{read.signed_by}^"  # the account name as a one-component person name (family name only)
    person = hd.sr.ObserverContext(observer_type=codes.cid270.Person,
                                   observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=radiologist))
    observation = hd.sr.ObservationContext(observer_person_context=person, observer_device_context=_device_observer(model_name))
    sr = _measurement_report(source, _group(source, polyline, tracking, measurements, evaluations, None), observation,
                             series_number=9004, final=True, verifier=radiologist)
    sr.SeriesDescription = f"thyronet signed read {read.read} v{read.version}"
    out.mkdir(parents=True, exist_ok=True)
    return _save(sr, out / f"{read.id}.sr.dcm")


def _acr_evaluations(acr: Assessment, recommendation: Recommendation | None, by: str = "proposed",
                     level: Code = TIRADS_LEVEL) -> list[hd.sr.QualitativeEvaluation]:
    """The ACR TI-RADS categories (``by`` whom: the model's proposal or the radiologist's signed
    read; each value of echogenic foci on its own), the level ("incomplete" when a category is
    missing) and the recommendation."""
    evaluations = [hd.sr.QualitativeEvaluation(_category_code(name, by), _code(value))
                   for name, values in acr.values.items() for value in values]
    evaluations.append(hd.sr.QualitativeEvaluation(level, _code(acr.level or "incomplete")))
    if recommendation is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(RECOMMENDATION, _code(recommendation.action)))
    return evaluations


def _category_code(category: str, by: str = "proposed") -> Code:
    prefix = "ACR_" if by == "proposed" else "SIGNED_"
    return Code(prefix + category.upper().replace(" ", "_"), SCHEME, f"ACR TI-RADS {category} ({by})")


def _private_scheme() -> pydicom.Dataset:
    """The declaration of thyronet's private coding scheme, as PS3.3 C.12.1.1.4 asks of any scheme it does not define."""
    item = pydicom.Dataset()
    item.CodingSchemeDesignator, item.CodingSchemeName = SCHEME, "thyronet decision-support codes"
    item.CodingSchemeVersion, item.CodingSchemeResponsibleOrganization = __version__, "thyronet project"
    return item


def _finding_site(source: pydicom.Dataset) -> hd.sr.FindingSite:
    """The thyroid, with the image's laterality where the source gives one (R or L)."""
    side = str(source.get("ImageLaterality", "") or source.get("Laterality", "") or "").upper()
    laterality = {"R": codes.SCT.Right, "L": codes.SCT.Left}.get(side)
    return hd.sr.FindingSite(anatomic_location=THYROID, laterality=laterality)
