"""The configs that ship with thyronet (``configs/*.yaml``): their names and files.

Apart from :mod:`thyronet.runs.config` so that the command line can list them without importing
what a config's values are checked against."""

from __future__ import annotations

from pathlib import Path

from thyronet.errors import ThyronetError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the configs that ship with thyronet (``cpu``, ``paper``, ...)."""
    return [p.stem for p in sorted(CONFIG_DIR.glob("*.yaml"))]


def config_path(name_or_path: str) -> Path:
    """A config file path, or the name of a shipped config (``cpu``, ``paper``, ``smoke``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    choices = ", ".join(shipped_configs())
    raise ThyronetError(f"config {name_or_path!r}: no such file and no shipped config of that name ({choices})")
