"""Several `thyronet cv` recipes side by side, one process each, until a deadline.

    python benchmarks/recipe_grid.py RECIPES.yaml OUT [--data PATH] [--deadline SECONDS] [--parallel N]
                                     [--seg-cv SEG_CV_DIR] [--set KEY=VALUE ...] [--only NAME ...]

On a GPU with many cores (one DDTI epoch takes about a second) every recipe runs at once, so that
the GPU is not left idle; on 2 CPU cores, `--parallel 2 --set trainer.threads=1` runs two at a time. RECIPES.yaml names a config and, per
recipe, its overrides (see benchmarks/recipes/). Each recipe's CV goes to OUT/NAME with its log in
OUT/NAME.log; a recipe still running at the deadline is stopped and keeps its finished folds (run
the same command again to continue). With --seg-cv, each finished region-of-interest recipe is
then scored on the segmenter's boxes too (benchmarks/region_cv.py), unless scores newer than its folds exist. Finally the figures of every
recipe are printed as one table. Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from thyronet.evaluation.metrics import format_ci
from thyronet.training.cv import format_segmentation_summary

HERE = Path(__file__).resolve().parent


def launch(name: str, config: str, overrides: list[str], args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "thyronet", "cv", "--config", config, "--data", args.data,
               "--out", str(args.out / name)]
    for override in [*overrides, *args.set]:
        command += ["--set", override]
    log = (args.out / f"{name}.log").open("a")
    print(f"{name}: {' '.join(command)}", flush=True)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=interruptible)


def interruptible() -> None:
    """In the child: answer SIGINT again. A grid started in the background of a shell inherits
    SIGINT ignored, and the deadline's SIGINT (a clean stop) would then go unheard."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_all(recipes: dict[str, list[str]], config: str, args: argparse.Namespace, deadline: float) -> dict[str, int | None]:
    """Runs the recipes, at most ``args.parallel`` at a time, in the order given; exit codes by
    recipe, None for one stopped at the deadline or never started."""
    pending = list(recipes.items())
    running: dict[str, subprocess.Popen] = {}
    codes: dict[str, int | None] = {}
    while pending or running:
        while pending and len(running) < args.parallel and time.monotonic() < deadline:
            name, overrides = pending.pop(0)
            running[name] = launch(name, config, overrides, args)
        for name, process in list(running.items()):
            if process.poll() is not None:
                codes[name] = process.returncode
                del running[name]
                print(f"{name}: finished with exit code {process.returncode} at {time.monotonic() - START:.0f} s", flush=True)
        if time.monotonic() > deadline:
            for name, process in running.items():
                process.send_signal(signal.SIGINT)  # `thyronet cv` stops cleanly and says where to resume
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                codes[name] = None
                print(f"{name}: stopped at the deadline", flush=True)
            for name, _ in pending:
                codes[name] = None
                print(f"{name}: not started before the deadline", flush=True)
            break
        time.sleep(2)
    return codes


def needs_region_scores(cv_dir: Path) -> bool:
    """A region-of-interest recipe whose predicted-region scores are missing or older than one of
    its folds (a finished CV run again rewrites its summary, not its folds)."""
    if yaml.safe_load((cv_dir / "config.yaml").read_text())["data"]["roi"]["mode"] == "none":
        return False
    scores = cv_dir / "region_comparison.json"
    folds = [fold.stat().st_mtime for fold in cv_dir.glob("fold-*/results.json")]
    return not scores.exists() or scores.stat().st_mtime < max(folds)


def score_predicted_region(name: str, args: argparse.Namespace) -> subprocess.Popen:
    print(f"{name}: scoring the predicted region", flush=True)
    log = (args.out / f"{name}.log").open("a")
    return subprocess.Popen([sys.executable, str(HERE / "region_cv.py"), str(args.out / name), str(args.seg_cv), "--data", args.data],
                            stdout=log, stderr=subprocess.STDOUT)


def table(out: Path, names: list[str]) -> str:
    """The classification recipes' figures as one table; a segmentation recipe's as its own."""
    lines = ["| recipe | folds | case AUROC mean ± std | pooled case AUROC [95% CI] | predicted region |", "|---|---|---|---|---|"]
    segmentation = []
    for name in names:
        summary_file, region_file = out / name / "cv_results.json", out / name / "region_comparison.json"
        if not summary_file.exists():
            lines.append(f"| {name} | unfinished | | | |")
            continue
        summary = json.loads(summary_file.read_text())
        if summary.get("task") == "segment":
            segmentation.append(f"{name}\n{format_segmentation_summary(summary)}")
            continue
        auroc = summary["case_auroc"]
        predicted = format_ci(json.loads(region_file.read_text())["predicted"]) if region_file.exists() else ""
        pooled = format_ci(summary["pooled_case"])
        lines.append(f"| {name} | {summary['folds']} | {auroc['mean']:.3f} ± {auroc['std']:.3f} | {pooled} | {predicted} |")
    return "\n".join([*lines, *segmentation])


START = time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--deadline", type=float, default=3600.0, help="seconds before unfinished recipes are stopped (default 3600)")
    parser.add_argument("--parallel", type=int, default=0, help="recipes running at once (default 0: all of them)")
    parser.add_argument("--seg-cv", type=Path, help="a segmentation CV folder on the same folds, to score the predicted region")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every recipe")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these recipes of the file, in this order (default: all)")
    args = parser.parse_args()
    plan = yaml.safe_load(args.recipes.read_text())
    unknown = sorted(set(args.only or ()) - set(plan["recipes"]))
    if unknown:
        parser.error(f"{args.recipes} has no recipe {', '.join(unknown)} (it has: {', '.join(plan['recipes'])})")
    recipes = {name: plan["recipes"][name] for name in args.only} if args.only else plan["recipes"]
    args.parallel = args.parallel or len(recipes)
    args.out.mkdir(parents=True, exist_ok=True)
    codes = run_all(recipes, plan["config"], args, START + args.deadline)
    if args.seg_cv:
        scoring = [score_predicted_region(name, args) for name, code in codes.items() if code == 0 and needs_region_scores(args.out / name)]
        for process in scoring:
            process.wait()
    print(table(args.out, list(recipes)))
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
