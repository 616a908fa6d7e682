import re

import numpy as np
import pydicom
import pytest
from PIL import Image

from synthetic import make_class_folders, make_dicom, ultrasound_image
from thyronet.data import open_inputs, open_source
from thyronet.data.imageio import MAX_PIXELS, read_image
from thyronet.errors import DataError, ThyronetError


def test_class_folders_any_letter_case(tmp_path):
    root = make_class_folders(tmp_path / "ext", per_class=3)
    collection = open_source(root)
    assert collection.source == "class-folders"
    assert collection.label_counts() == {"benign": 3, "malignant": 3}
    assert len(set(collection.case_ids())) == 6


def test_non_image_in_class_folder_is_named_and_skipped(tmp_path):
    root = make_class_folders(tmp_path / "ext", per_class=2)
    (root / "Benign" / "notes.txt").write_text("hello")
    collection = open_source(root)
    assert len(collection.images) == 4
    assert [i.path.name for i in collection.issues] == ["notes.txt"]
    assert "not an image" in collection.issues[0].problem
    with pytest.raises(DataError, match="notes.txt: not an image"):
        open_source(root, strict=True)


def test_csv_manifest_with_groups_and_bad_rows(tmp_path):
    for i in range(3):
        Image.fromarray(ultrasound_image(i, i == 0)).save(tmp_path / f"a{i}.png")
    rows = ["path,label,group", "a0.png,malignant,p1", "a1.png,benign,p1", "a2.png,0,", "missing.png,1,p3", "a2.png,perhaps,"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    collection = open_source(tmp_path / "list.csv")
    assert collection.source == "manifest"
    assert [r.case_id for r in collection.images] == ["p1", "p1", "a2.png"]
    problems = sorted(i.problem for i in collection.issues)
    assert any("file not found" in p for p in problems) and any("line 6: unknown label" in p for p in problems)


def test_csv_without_header_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("a.png;benign\n")
    with pytest.raises(DataError, match="path,label"):
        open_source(tmp_path / "bad.csv")


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(ThyronetError, match="no such file"):
        open_source(tmp_path / "nowhere")


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL"])
def test_dicom_colour_models_read_as_greyscale(tmp_path, photometric):
    path = make_dicom(tmp_path / "a.dcm", photometric=photometric)
    image = read_image(path)
    assert image.shape == (64, 96) and image.dtype == np.uint8
    reference = read_image(make_dicom(tmp_path / "ref.dcm"))
    if photometric == "MONOCHROME1":
        reference = 255 - reference
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 3


def test_dicom_16_bit_is_scaled_to_8_bit(tmp_path):
    image = read_image(make_dicom(tmp_path / "a.dcm", bits=16))
    assert image.dtype == np.uint8 and image.max() == 255


def test_multiframe_dicom_gives_one_record_per_frame_in_one_case(tmp_path):
    folder = tmp_path / "malignant"
    folder.mkdir()
    make_dicom(folder / "cine.dcm", frames=3)
    collection = open_source(tmp_path)
    assert [r.frame for r in collection.images] == [0, 1, 2]
    assert len({r.case_id for r in collection.images}) == 1
    assert read_image(collection.images[2].path, 2).shape == (64, 96)


def test_dicom_without_pixel_data_is_a_clear_error(tmp_path):
    path = make_dicom(tmp_path / "empty.dcm", pixels=False)
    with pytest.raises(DataError, match="empty.dcm: Secondary Capture Image Storage, modality US: no pixel data"):
        read_image(path)
    collection = open_inputs([path, make_dicom(tmp_path / "ok.dcm")])
    assert len(collection.images) == 1 and "no pixel data" in collection.issues[0].problem


def test_dicom_is_recognised_by_content_not_extension(tmp_path):
    path = make_dicom(tmp_path / "scan.bin")
    assert read_image(path).shape == (64, 96)


def test_png_16_bit_and_alpha(tmp_path):
    deep = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").max() == 255
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, ..., 1] = 100
    rgba[..., 3] = 10
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    grey = read_image(tmp_path / "alpha.png")
    assert grey.shape == (32, 32) and grey[0, 0] == round(0.299 * 200 + 0.587 * 100)  # alpha is ignored


def test_truncated_jpeg_is_named(tmp_path):
    path = tmp_path / "t.jpg"
    Image.fromarray(ultrasound_image(0, True)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="t.jpg: corrupt or truncated"):
        read_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    path = tmp_path / "bomb.png"
    Image.new("L", (side, side)).save(path, optimize=False)
    with pytest.raises(DataError, match="over the .*pixel limit"):
        read_image(path)


def test_mixed_files_for_prediction(tmp_path):
    Image.fromarray(ultrasound_image(0, True)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"")
    collection = open_inputs([tmp_path / "a.png", tmp_path / "b.jpg"])
    assert [r.path.name for r in collection.images] == ["a.png"]
    assert collection.issues[0].problem == "empty file (0 bytes)"


@pytest.mark.parametrize("mode", ["LA", "1", "CMYK", "I;16", "F", "RGBA", "P"])
def test_every_pillow_mode_reads_as_grey(tmp_path, mode):
    from thyronet.data.imageio import read_image

    grey = Image.fromarray(ultrasound_image(3, True))
    image = grey.convert("RGB").convert(mode) if mode in ("CMYK", "P") else grey.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.tiff" if mode in ("I;16", "F") else "x.png")
    image.save(path)
    array = read_image(path)
    assert array.dtype == np.uint8 and array.shape == (360, 560)


def test_content_decides_the_reader_not_the_suffix(tmp_path):
    from thyronet.data.imageio import read_image

    Image.fromarray(ultrasound_image(3, True)).save(tmp_path / "png_bytes.dcm", format="PNG")
    assert read_image(tmp_path / "png_bytes.dcm").shape == (360, 560)
    (tmp_path / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError, match="noise.dcm"):
        read_image(tmp_path / "noise.dcm")


@pytest.mark.parametrize("shape, problem", [((2, 2), "too small"), ((1, 5000), "too small"), ((40, 400), "too elongated"),
                                            ((200, 300), "blank")])
def test_degenerate_frames_are_refused_with_the_reason(tmp_path, shape, problem):
    from thyronet.data.imageio import read_image

    Image.fromarray(np.full(shape, 90, np.uint8) if problem == "blank" else
                    np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / "d.png")
    with pytest.raises(DataError, match=f"d.png: .*{problem}"):
        read_image(tmp_path / "d.png")


def _edited(path, **attributes):
    """A copy of a DICOM file's data set with attributes set (None deletes one), saved in place."""
    dataset = pydicom.dcmread(path)
    with pydicom.config.disable_value_validation():  # the defects a scanner or a broken tool writes
        for name, value in attributes.items():
            if value is None:
                dataset.pop(name, None)
            else:
                setattr(dataset, name, value)
        dataset.save_as(path)
    return path


@pytest.mark.parametrize(("attributes", "reason"), [
    ({"SOPClassUID": pydicom.uid.CTImageStorage, "Modality": "CT"}, "CT Image Storage, modality CT: thyronet reads ultrasound only"),
    ({"SOPClassUID": pydicom.uid.MRImageStorage, "Modality": None}, "MR Image Storage: thyronet reads ultrasound only"),
    ({"Modality": "MG"}, "Secondary Capture Image Storage, modality MG: thyronet reads ultrasound only"),
    ({"Rows": None}, "Secondary Capture Image Storage, modality US: malformed header (Rows/Columns missing or zero)"),
])
def test_only_ultrasound_is_answered_and_a_refusal_is_one_line(tmp_path, attributes, reason):
    path = _edited(make_dicom(tmp_path / "object.dcm"), **attributes)
    with pytest.raises(DataError) as refused:
        read_image(path)
    assert str(refused.value) == f"{path}: {reason}"
    collection = open_inputs([path, make_dicom(tmp_path / "ok.dcm")])
    assert len(collection.images) == 1 and collection.issues[0].problem == reason


def test_a_frame_count_that_is_not_a_number_is_one_line(tmp_path):
    path = make_dicom(tmp_path / "cine.dcm", frames=3)
    stored = path.read_bytes()
    element = b"\x28\x00\x08\x00IS\x02\x003 "  # (0028,0008) IS, 2 bytes, "3 "
    assert stored.count(element) == 1
    path.write_bytes(stored.replace(element, b"\x28\x00\x08\x00IS\x06\x00three "))
    problem = "malformed header (NumberOfFrames 'three' is not a number)"
    with pytest.raises(DataError, match=re.escape(f"cine.dcm: Secondary Capture Image Storage, modality US: {problem}")):
        read_image(path)
    assert problem in open_inputs([path]).issues[0].problem


def test_palette_colour_is_read_through_its_lookup_table(tmp_path):
    path = make_dicom(tmp_path / "palette.dcm")
    dataset = pydicom.dcmread(path)
    grey = dataset.pixel_array.copy()
    dataset.PhotometricInterpretation = "PALETTE COLOR"
    ramp = np.arange(256, dtype=np.uint16) * 257  # the identity, 8 bits to 16
    for colour in ("Red", "Green", "Blue"):
        setattr(dataset, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        dataset[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(dataset, f"{colour}PaletteColorLookupTableData", ramp.tobytes())
    dataset.save_as(path)
    assert np.abs(read_image(path).astype(int) - grey).max() <= 1
