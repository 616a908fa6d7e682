"""Reader for DDTI (Pedraza et al., SPIE 2015) in its official flat layout.

``<case>.xml`` holds the case's descriptors, TIRADS and one ``<mark>`` per image with the nodule
outline as a JSON list of polygons (possibly wrapped over several lines); ``<case>_<k>.jpg``
is image k of the case.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from thyronet.data.imageio import probe_image
from thyronet.data.records import Collection, ImageRecord, Polygon
from thyronet.data.vocabulary import DESCRIPTORS, label_from_tirads, normalise, normalise_tirads
from thyronet.errors import DataError, DataIssue

XML_FIELDS = (
    "number", "age", "sex", "composition", "echogenicity", "margins",
    "calcifications", "tirads", "reportbacaf", "reporteco",
)


def is_ddti_folder(path: Path) -> bool:
    """A folder with at least one XML file whose root element is ``<case>``."""
    if not path.is_dir():
        return False
    for xml_path in sorted(path.glob("*.xml"))[:5]:
        try:
            for _, element in ET.iterparse(xml_path, events=("start",)):
                return element.tag == "case"
        except ET.ParseError:
            continue
    return False


def parse_outlines(text: str | None, path: Path) -> tuple[Polygon, ...]:
    """The JSON list of regions in a ``<svg>`` element -> polygons; empty or ``[]`` -> none."""
    if text is None or not text.strip():
        return ()
    try:
        regions = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"broken outline JSON in <svg> ({error.msg} at char {error.pos})") from None
    if not isinstance(regions, list):
        raise DataError(path, "outline JSON in <svg> is not a list of regions")
    polygons = []
    for region in regions:
        try:
            points = tuple((float(p["x"]), float(p["y"])) for p in region["points"])
        except (KeyError, TypeError, ValueError):
            raise DataError(path, "outline region without a valid 'points' list of {x, y}") from None
        if len(points) >= 3:
            polygons.append(points)
    return tuple(polygons)


def _text(root: ET.Element, tag: str) -> str:
    element = root.find(tag)
    return (element.text or "").strip() if element is not None else ""


def parse_case(
    xml_path: Path, report: Callable[[DataError], None]
) -> tuple[str, dict, list[tuple[str, tuple[Polygon, ...]]]]:
    """One case XML -> (case id, attributes, [(image number, outlines)]).

    Raises DataError for a file that cannot be used at all; a descriptor value outside the
    vocabulary is passed to ``report`` and left empty.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        raise DataError(xml_path, f"broken XML ({error})") from None
    if root.tag != "case":
        raise DataError(xml_path, f"root element is <{root.tag}>, expected <case>")
    raw = {tag: _text(root, tag) for tag in XML_FIELDS}
    case_id = raw["number"] or xml_path.stem
    try:
        tirads = normalise_tirads(raw["tirads"])
    except ValueError as error:
        raise DataError(xml_path, str(error)) from None
    attributes: dict[str, str | None] = {"tirads": tirads}
    for field in (*DESCRIPTORS, "sex"):
        try:
            attributes[field] = normalise(field, raw[field])
        except ValueError as error:
            report(DataError(xml_path, str(error)))
            attributes[field] = None
    attributes["age"] = raw["age"] if raw["age"].isdigit() else None
    attributes["report_fna"] = raw["reportbacaf"] or None
    attributes["report_echo"] = " ".join(raw["reporteco"].split()) or None
    marks = []
    for mark in root.findall("mark"):
        number = _text(mark, "image")
        if not number:
            raise DataError(xml_path, "<mark> without an <image> number")
        marks.append((number, parse_outlines(mark.findtext("svg"), xml_path)))
    if not marks:
        raise DataError(xml_path, "case has no <mark> (no image)")
    return case_id, attributes, marks


def read_ddti(root: str | Path, strict: bool = False) -> Collection:
    """Read every case of a DDTI folder.

    Unlabelled cases (no TIRADS) are kept with ``label=None``. A problem with one file is raised
    at once in ``strict`` mode, otherwise recorded in ``Collection.issues`` and skipped.
    """
    root = Path(root)
    collection = Collection(root=root, source="ddti", images=[])

    def skip(error: DataError) -> None:
        if strict:
            raise error
        collection.issues.append(DataIssue.from_error(error))

    xml_paths = sorted(root.glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    for xml_path in xml_paths:
        try:
            case_id, attributes, marks = parse_case(xml_path, skip)
        except DataError as error:
            skip(error)
            continue
        collection.case_attributes[case_id] = attributes
        label = label_from_tirads(attributes["tirads"])
        for number, outlines in marks:
            image_path = root / f"{case_id}_{number}.jpg"
            try:
                probe_image(image_path)
            except DataError as error:
                skip(DataError(error.path, f"{error.problem} (referenced by {xml_path.name})"))
                continue
            collection.images.append(
                ImageRecord(image_path, case_id, label, "ddti", outlines, attributes)
            )
    if not xml_paths:
        raise DataError(root, "no DDTI case XML files found")
    return collection
