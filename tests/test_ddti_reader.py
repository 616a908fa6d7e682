from pathlib import Path

import pytest

from synthetic import case_xml, make_ddti, outline_json, ultrasound_image
from thyronet.data.ddti import parse_outlines, read_ddti
from thyronet.errors import DataError


def test_reads_cases_images_labels_and_outlines(ddti_dir):
    collection = read_ddti(ddti_dir)
    assert len(collection.case_ids()) == 18
    counts = collection.label_counts("case")
    assert counts == {"benign": 6, "malignant": 10, "unlabelled": 2}
    # cases 4, 8, 12 and 16 have two images
    assert len(collection.images) == 22
    assert not collection.issues
    record = next(r for r in collection.images if r.case_id == "4" and r.path.name == "4_2.jpg")
    assert len(record.outlines) == 1 and len(record.outlines[0]) == 24
    assert record.attributes["calcifications"] == "none"
    assert record.attributes["tirads"] in ("2", "3", "4a", "4b", "4c", "5")


def test_unlabelled_cases_are_kept_not_dropped(ddti_dir):
    collection = read_ddti(ddti_dir)
    unlabelled = [r for r in collection.images if r.label is None]
    assert {r.case_id for r in unlabelled} == {"17", "18"}


def test_outline_json_wrapped_over_lines_parses():
    text = outline_json((10, 10, 50, 40))
    assert "\n" in text
    polygons = parse_outlines(text, Path("x.xml"))
    assert len(polygons) == 1 and all(10 <= x <= 50 for x, _ in polygons[0])


@pytest.mark.parametrize("text", ["", "   ", "[]"])
def test_empty_outline_means_none(text):
    assert parse_outlines(text, Path("x.xml")) == ()


@pytest.mark.parametrize("text, problem", [('[{"points": [', "broken outline JSON"), ('{"a": 1}', "not a list"),
                                           ('[{"nopoints": []}]', "valid 'points'")])
def test_broken_outline_json_names_the_file(text, problem):
    with pytest.raises(DataError, match=problem) as info:
        parse_outlines(text, Path("7.xml"))
    assert str(info.value).startswith("7.xml:")


def _bad_folder(tmp_path: Path, name: str, xml: str, with_image: bool = True) -> Path:
    root = make_ddti(tmp_path / "d", benign=2, malignant=2, unlabelled=0)
    (root / f"{name}.xml").write_text(xml)
    if with_image:
        from PIL import Image

        Image.fromarray(ultrasound_image(1, True)).save(root / f"{name}_1.jpg")
    return root


@pytest.mark.parametrize(
    "xml, problem",
    [
        ("<case><number>9", "broken XML"),
        (case_xml("9", "7", [(1, "")]), "unknown TIRADS value '7'"),
        (case_xml("9", "4a", [(1, "[{")]), "broken outline JSON"),
        (case_xml("9", "4a", []), "no <mark>"),
        ("<notacase/>", "expected <case>"),
    ],
)
def test_bad_case_files_are_skipped_with_a_warning_or_fail_in_strict_mode(tmp_path, xml, problem):
    root = _bad_folder(tmp_path, "9", xml)
    collection = read_ddti(root)
    assert len(collection.case_ids()) == 4
    assert len(collection.issues) == 1
    assert collection.issues[0].path.name == "9.xml" and problem in collection.issues[0].problem
    with pytest.raises(DataError, match=problem):
        read_ddti(root, strict=True)


def test_unknown_descriptor_value_is_a_warning_and_left_empty(tmp_path):
    root = _bad_folder(tmp_path, "9", case_xml("9", "4a", [(1, "")], margins="wavy"))
    collection = read_ddti(root)
    record = next(r for r in collection.images if r.case_id == "9")
    assert record.attributes["margins"] is None and record.label == 1
    assert "unknown margins value 'wavy'" in collection.issues[0].problem


def test_missing_referenced_image_is_a_warning_naming_it(tmp_path):
    root = _bad_folder(tmp_path, "9", case_xml("9", "4a", [(1, ""), (2, "")]))
    collection = read_ddti(root)
    assert [i.path.name for i in collection.issues] == ["9_2.jpg"]
    assert "file not found (referenced by 9.xml)" in collection.issues[0].problem
    assert "9" in collection.case_ids()


@pytest.mark.parametrize("content, problem", [(b"", "empty file"), (b"\xff\xd8\xff\xe0garbage", "corrupt or truncated"),
                                               (b"GIF89a-not-really", "not a readable image")])
def test_corrupt_or_empty_images_are_skipped(tmp_path, content, problem):
    root = _bad_folder(tmp_path, "9", case_xml("9", "4a", [(1, "")]), with_image=False)
    (root / "9_1.jpg").write_bytes(content)
    collection = read_ddti(root)
    assert collection.issues[0].path.name == "9_1.jpg" and problem in collection.issues[0].problem
    with pytest.raises(DataError):
        read_ddti(root, strict=True)
