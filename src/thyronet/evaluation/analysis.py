"""Where does the model fail? Error rates by nodule type (composition, echogenicity, margins,
calcifications, TIRADS), from a run's or a CV folder's held-out predictions."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from thyronet.data import open_source
from thyronet.data.locate import resolve_data_path
from thyronet.data.records import Collection
from thyronet.errors import ThyronetError
from thyronet.inference.predictor import read_prediction_rows
from thyronet.io import atomic_path, write_text_atomic
from thyronet.runs.config import config_from_dict
from thyronet.runs.layout import CVFolder, RunFolder

CATEGORIES = ("composition", "echogenicity", "margins", "calcifications", "tirads")


def held_out_predictions(run_dir: Path) -> list[dict[str, str]]:
    """Rows of ``predictions_test.csv`` of a run, or of every fold of a CV folder."""
    runs = CVFolder(run_dir).folds() or [RunFolder(run_dir)]
    files = [run.predictions("test") for run in runs if run.predictions("test").is_file()]
    if not files:
        raise ThyronetError(f"{run_dir}: no predictions_test.csv (a finished run or CV folder is needed)")
    rows = [row for file in files for row in read_prediction_rows(file)]
    if rows and "decision" not in rows[0]:
        raise ThyronetError(f"{run_dir}: a multi-class classifier's predictions; the error analysis takes "
                            "benign-vs-malignant runs (their decisions at the operating threshold)")
    return rows


def error_table(rows: list[dict[str, str]], collection: Collection) -> dict[str, dict[str, dict[str, Any]]]:
    """category -> value -> {images, errors, error_rate}, judged at the operating threshold."""
    attributes = collection.case_attributes
    table: dict[str, dict[str, dict[str, Any]]] = {c: defaultdict(lambda: {"images": 0, "errors": 0}) for c in CATEGORIES}
    for row in rows:
        if not row["label"]:
            continue
        wrong = row["decision"] != row["label"]
        case = attributes.get(row["case"], {})
        for category in CATEGORIES:
            cell = table[category][case.get(category) or "(not recorded)"]
            cell["images"] += 1
            cell["errors"] += int(wrong)
    for category in CATEGORIES:
        for cell in table[category].values():
            cell["error_rate"] = cell["errors"] / cell["images"]
        table[category] = dict(sorted(table[category].items()))
    return table


def format_table(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| category | value | images | errors | error rate |", "| --- | --- | ---: | ---: | ---: |"]
    for category, values in table.items():
        for value, cell in values.items():
            lines.append(f"| {category} | {value} | {cell['images']} | {cell['errors']} | {cell['error_rate']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_error_bars(table: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """One panel per category: error rate per value, with the image count on each bar."""
    fig, axes = plt.subplots(1, len(table), figsize=(4 * len(table), 3.8), sharey=True)
    for axis, (category, values) in zip(axes, table.items(), strict=False):
        names = list(values)
        rates = [values[n]["error_rate"] for n in names]
        bars = axis.bar(range(len(names)), rates, color="#c0504d")
        for bar, name in zip(bars, names, strict=False):
            axis.annotate(f"n={values[name]['images']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=7)
        axis.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        axis.set_title(category)
        axis.set_ylim(0, 1.05)
    axes[0].set_ylabel("error rate (operating threshold)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def analyse_run(run_dir: Path, data: str | None = None) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    """The error table of a run's (or CV folder's) held-out predictions and its Markdown, written
    beside them as ``errors_by_category.md``/``.png``; the data source is the run's own unless given."""
    config_file = RunFolder(run_dir).config
    if data is None and config_file.is_file():
        data = config_from_dict(yaml.safe_load(config_file.read_text())).data.path
    table = error_table(held_out_predictions(run_dir), open_source(resolve_data_path(data)))
    text = format_table(table)
    write_text_atomic(run_dir / "errors_by_category.md", text)
    plot_error_bars(table, run_dir / "errors_by_category.png")
    return table, text

