"""Fixed vocabularies for DDTI's free-text descriptor fields, and the TIRADS label rule.

DDTI's XML spells the same finding several ways ("microcalcification"/"microcalcifications",
"ill- defined"/"ill defined"). Each field maps its spellings onto one fixed vocabulary so that
error analysis by nodule type counts each finding once.
"""

from __future__ import annotations

import re

from thyronet.data.records import BENIGN, MALIGNANT

VOCABULARIES: dict[str, dict[str, str]] = {
    "composition": {
        "solid": "solid",
        "predominantly solid": "predominantly solid",
        "predominantly cystic": "predominantly cystic",
        "cystic": "cystic",
        "spongiform": "spongiform",
        "dense": "dense",
    },
    "echogenicity": {
        "hyperechogenicity": "hyperechoic",
        "hyperechoic": "hyperechoic",
        "isoechogenicity": "isoechoic",
        "isoechoic": "isoechoic",
        "hypoechogenicity": "hypoechoic",
        "hypoechoic": "hypoechoic",
        "marked hypoechogenicity": "marked hypoechoic",
        "marked hypoechoic": "marked hypoechoic",
    },
    "margins": {
        # "well defined smooth" is DDTI's longer spelling of a well-defined margin.
        "well defined": "well defined",
        "well defined smooth": "well defined",
        "ill defined": "ill defined",
        "microlobulated": "microlobulated",
        "macrolobulated": "macrolobulated",
        "spiculated": "spiculated",
    },
    "calcifications": {
        "non": "none",
        "none": "none",
        "microcalcification": "microcalcifications",
        "microcalcifications": "microcalcifications",
        "macrocalcification": "macrocalcifications",
        "macrocalcifications": "macrocalcifications",
    },
    "sex": {"f": "F", "m": "M", "u": None},  # "u" = unknown
}

# The classes each descriptor head predicts, in a fixed order (the values of VOCABULARIES). Every
# output is built from DESCRIPTOR_CLASSES (the CSV's columns, the service's schema, the SR), so a head
# added here needs no other change there.
DESCRIPTORS = ("composition", "echogenicity", "margins", "calcifications")
DESCRIPTOR_CLASSES: dict[str, tuple[str, ...]] = {
    field: tuple(dict.fromkeys(VOCABULARIES[field].values())) for field in DESCRIPTORS
}
MISSING = -1  # target of a descriptor the source does not give: it contributes no loss


def descriptor_targets(attributes: dict[str, str | None]) -> list[int]:
    """Class index per descriptor head (DESCRIPTORS order), MISSING where the value is absent."""
    return [
        DESCRIPTOR_CLASSES[field].index(attributes[field]) if attributes.get(field) else MISSING
        for field in DESCRIPTORS
    ]


TIRADS_LABELS = {"2": BENIGN, "3": BENIGN, "4a": MALIGNANT, "4b": MALIGNANT, "4c": MALIGNANT, "5": MALIGNANT}
TIRADS_LEVELS = tuple(TIRADS_LABELS)  # in order of suspicion: the ordinal head's scale


def tirads_target(attributes: dict[str, str | None]) -> int:
    """The TI-RADS category's position in TIRADS_LEVELS, MISSING where the source gives none."""
    tirads = attributes.get("tirads")
    return TIRADS_LEVELS.index(tirads) if tirads else MISSING


def _canonical_text(text: str) -> str:
    """Lower case, hyphens and runs of white space folded to one space ("ill- defined")."""
    return re.sub(r"[\s\-_]+", " ", text.strip().lower()).strip()


def normalise(field: str, raw: str | None) -> str | None:
    """The fixed-vocabulary value of a descriptor, ``None`` if empty.

    Raises ``ValueError`` for a value outside the vocabulary.
    """
    if raw is None or not raw.strip():
        return None
    key = _canonical_text(raw)
    vocabulary = VOCABULARIES[field]
    if key not in vocabulary:
        raise ValueError(f"unknown {field} value {raw.strip()!r} (expected one of {sorted(set(vocabulary))})")
    return vocabulary[key]


def normalise_tirads(raw: str | None) -> str | None:
    """'4A ' -> '4a'; empty -> None; raises ``ValueError`` for a category outside 2-5."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower().replace(" ", "")
    if value not in TIRADS_LABELS:
        raise ValueError(f"unknown TIRADS value {raw.strip()!r} (expected one of {list(TIRADS_LABELS)})")
    return value


def label_from_tirads(tirads: str | None) -> int | None:
    """TIRADS 2, 3 -> benign; 4a, 4b, 4c, 5 -> malignant; no TIRADS -> unlabelled."""
    return None if tirads is None else TIRADS_LABELS[tirads]


def parse_label(raw: str) -> int | None:
    """A label as written in a manifest: benign/malignant/0/1 (any case), empty -> unlabelled."""
    value = raw.strip().lower()
    if value in ("", "unlabelled", "unlabeled", "unknown"):
        return None
    if value in ("0", "benign"):
        return BENIGN
    if value in ("1", "malignant"):
        return MALIGNANT
    raise ValueError(f"unknown label {raw.strip()!r} (expected benign, malignant, 0, 1 or empty)")
