import pytest

from thyronet.data.vocabulary import label_from_tirads, normalise, normalise_tirads, parse_label


@pytest.mark.parametrize(
    "field, raw, expected",
    [
        ("calcifications", "microcalcification", "microcalcifications"),
        ("calcifications", "Microcalcifications ", "microcalcifications"),
        ("calcifications", "non", "none"),
        ("calcifications", "macrocalcification", "macrocalcifications"),
        ("margins", "ill- defined", "ill defined"),
        ("margins", "ill defined", "ill defined"),
        ("margins", "well defined smooth", "well defined"),
        ("composition", "predominantly  solid", "predominantly solid"),
        ("composition", "dense", "dense"),
        ("echogenicity", "marked hypoechogenicity", "marked hypoechoic"),
        ("sex", "u", None),
        ("sex", "F", "F"),
        ("composition", "", None),
        ("composition", None, None),
    ],
)
def test_normalise_maps_spelling_variants(field, raw, expected):
    assert normalise(field, raw) == expected


def test_unknown_descriptor_is_an_error_naming_the_value():
    with pytest.raises(ValueError, match="unknown margins value 'wavy'"):
        normalise("margins", "wavy")


@pytest.mark.parametrize("raw, label", [("2", 0), ("3", 0), ("4a", 1), ("4B", 1), (" 4c ", 1), ("5", 1), ("", None)])
def test_tirads_label_rule(raw, label):
    assert label_from_tirads(normalise_tirads(raw)) == label


@pytest.mark.parametrize("raw", ["6", "4d", "1", "x"])
def test_unknown_tirads_is_rejected(raw):
    with pytest.raises(ValueError, match="unknown TIRADS"):
        normalise_tirads(raw)


@pytest.mark.parametrize("raw, label", [("benign", 0), ("Malignant", 1), ("0", 0), ("1", 1), ("", None)])
def test_manifest_labels(raw, label):
    assert parse_label(raw) == label


def test_bad_manifest_label():
    with pytest.raises(ValueError, match="unknown label"):
        parse_label("maybe")
