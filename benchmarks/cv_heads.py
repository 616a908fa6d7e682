"""Descriptor heads and the operating point over the folds of a classification CV.

    python benchmarks/cv_heads.py CV_DIR [CV_DIR ...]

Reads each fold's results.json (held-out test side) and prints, per CV folder: the case-level
balanced accuracy, sensitivity and specificity at the threshold chosen on validation (mean ±
std over folds), and for runs with descriptor heads each head's accuracy and macro-F1 beside
always answering the most frequent value, weighted by the images each fold scored. Not a test:
the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from thyronet.runs.layout import CVFolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    for cv_dir in args.cv_dirs:
        tests = [json.loads(fold.results.read_text())["test"] for fold in CVFolder(cv_dir).folds() if fold.results.is_file()]
        print(f"## {cv_dir} ({len(tests)} folds)")
        for key in ("balanced_acc", "sensitivity", "specificity"):
            values = np.array([t["case_operating"][key] for t in tests], float)
            print(f"- case {key} at the validation-chosen threshold: {np.nanmean(values):.3f} ± {np.nanstd(values, ddof=1):.3f}")
        heads = tests[0].get("descriptors") or {}
        if heads:
            print("\n| head | images | accuracy | majority accuracy | macro-F1 | majority macro-F1 |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for head in heads:
            parts = [t["descriptors"][head] for t in tests]
            n = np.array([p["n"] for p in parts], float)

            def weighted(key: str, parts=parts, n=n) -> float:
                return float(np.sum([p[key] * k for p, k in zip(parts, n, strict=True)]) / n.sum())

            print(f"| {head} | {int(n.sum())} | {weighted('acc'):.3f} | {weighted('majority_acc'):.3f} | "
                  f"{weighted('macro_f1'):.3f} | {weighted('majority_macro_f1'):.3f} |")
        print()


if __name__ == "__main__":
    main()
