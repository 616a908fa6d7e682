"""Where the DDTI data lies: a CLI option, then ``$THYRONET_DDTI``, then ``../shared/data/ddti``."""

from __future__ import annotations

import os
from pathlib import Path

from thyronet.errors import ThyronetError

ENV_VAR = "THYRONET_DDTI"
DEFAULT_LOCATION = Path("../shared/data/ddti")

HOW_TO_OBTAIN = (
    "DDTI (Digital Database of Thyroid Ultrasound Images, Pedraza et al., SPIE 9287, 2015) is "
    "published by CIM@LAB, Universidad Nacional de Colombia; download it from the group's site, "
    "unpack the flat folder of <case>.xml and <case>_<k>.jpg files, and point thyronet at it with "
    f"--data PATH or the environment variable {ENV_VAR}. thyronet never downloads data itself."
)


def resolve_data_path(option: str | Path | None = None) -> Path:
    """The data folder to use, or a :class:`ThyronetError` explaining how to obtain DDTI."""
    if option:
        candidates = [("--data", Path(option))]
    elif os.environ.get(ENV_VAR):
        candidates = [(f"${ENV_VAR}", Path(os.environ[ENV_VAR]))]
    else:
        candidates = [("default location", DEFAULT_LOCATION)]
    origin, path = candidates[0]
    if path.exists():
        return path
    raise ThyronetError(f"No data at {path} (from {origin}). {HOW_TO_OBTAIN}")
