"""How well the segmenter's calipers agree with the expert's, on the cases its run held out.

    python benchmarks/size_agreement.py RUN [--data ../shared/data/ddti] [--side test] [--out DIR]

RUN is a segmenter run folder (or a classifier run that carries its segmenter is not enough: the
split must be the segmenter's own). The frames of the split's held-out side are segmented at their
own resolution and the predicted outline's long and short axes (as calipers take them) compared
with the expert outline's: the median relative error, the share of images within 10% and 20%
(readers differ by about 10-15%; ACR's growth rule is 20% in two dimensions), with 95% bootstrap
intervals over images, a frame where nothing is found counting as outside; and a Bland-Altman
plot of the long axis. Prints the table and writes ``size_agreement.json`` and the plot to DIR
(default: RUN/size-agreement). Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thyronet.data import open_source
from thyronet.data.splits import SplitPlan
from thyronet.evaluation.segmetrics import evaluate_segmenter, format_segmentation
from thyronet.inference.segmenter import Segmenter
from thyronet.io import write_text_atomic
from thyronet.runs.layout import RunFolder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--side", default="test", choices=("val", "test"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    folder = RunFolder(args.run)
    split = SplitPlan.load(folder.split).splits[0]
    cases = set(getattr(split, args.side))
    records = [r for r in open_source(args.data).images if r.case_id in cases and r.outlines]
    if not records:
        print(f"{args.run}: no outlined frame on the {args.side} side", file=sys.stderr)
        return 2
    out = args.out or args.run / "size-agreement"
    out.mkdir(parents=True, exist_ok=True)
    summary = evaluate_segmenter(Segmenter.load(folder.best), records, out / f"segments_{args.side}.csv")
    summary.update(run=str(args.run), side=args.side, cases=len(cases))
    write_text_atomic(out / "size_agreement.json", json.dumps(summary, indent=1))
    print(format_segmentation({args.side: summary}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
