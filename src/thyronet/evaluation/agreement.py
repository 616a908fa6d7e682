"""How far the radiologists went along with the model, from a reading store's signed reads:
per ACR TI-RADS category, the agreement of the model's proposal with the signed value (Cohen's
kappa and the table of proposed against signed), the TR level's and the recommendation's
agreement, how often the outline and calipers were changed and by how much the long axis moved;
and against the outcomes where attached (Bethesda II benign, V-VI malignant, pathology), the
model's decision and the radiologists' (TR4-TR5 as positive) sensitivity and specificity on the
same reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from thyronet.data.readstore import Read, caliper_mm
from thyronet.data.tirads import CATEGORIES, assess

SUSPICIOUS = ("TR4", "TR5")  # the radiologist's read counted as positive against an outcome


def _value(values: Sequence[str] | None) -> str:
    return "; ".join(sorted(values)) if values else "(none)"


def _rates(truth: list[int], positive: list[bool]) -> dict[str, Any]:
    truth_array, positive_array = np.array(truth, dtype=bool), np.array(positive, dtype=bool)
    malignant, benign = truth_array.sum(), (~truth_array).sum()
    return {"sensitivity": float((positive_array & truth_array).sum() / malignant) if malignant else None,
            "specificity": float((~positive_array & ~truth_array).sum() / benign) if benign else None,
            "malignant": int(malignant), "benign": int(benign)}


def agreement(reads: Sequence[Read]) -> dict[str, Any]:
    """The figures of the module's docstring for ``reads`` (signed versions)."""
    result: dict[str, Any] = {"reads": len(reads), "categories": {}}
    for name in CATEGORIES:
        pairs = [(_value(r.proposal.get("categories", {}).get(name)), _value(r.confirmed.get("categories", {}).get(name)))
                 for r in reads]
        proposed = [p for p, _ in pairs if p != "(none)"]
        entry: dict[str, Any] = {"proposed": len(proposed), "kept": sum(p == s for p, s in pairs if p != "(none)"),
                                 "table": {f"{p} -> {s}": n for (p, s), n in sorted(Counter(pairs).items())}}
        scored = [(p, s) for p, s in pairs if p != "(none)"]
        if len({v for pair in scored for v in pair}) > 1:
            entry["kappa"] = float(cohen_kappa_score([p for p, _ in scored], [s for _, s in scored]))
        result["categories"][name] = entry
    levels = [(r.proposal.get("level"), r.assessment()[0].level) for r in reads]
    compared = [(p, s) for p, s in levels if p]
    result["level"] = {"proposed": len(compared), "agreed": sum(p == s for p, s in compared),
                       "table": {f"{p} -> {s}": n for (p, s), n in sorted(Counter(compared).items())}}
    actions = [(r.proposal.get("recommendation"), r.assessment()[1].action) for r in reads]
    compared_actions = [(p, s) for p, s in actions if p and p not in ("incomplete", "size needed")]
    result["recommendation"] = {"proposed": len(compared_actions), "agreed": sum(p == s for p, s in compared_actions)}
    moved = []
    for read in reads:
        before = caliper_mm((read.proposal.get("calipers") or {}).get("long"), read.source.spacing or (1.0, 1.0))
        after = caliper_mm((read.confirmed.get("calipers") or {}).get("long"), read.source.spacing or (1.0, 1.0))
        if before and after:
            moved.append(abs(after - before) / after)
    result["outline_changed"] = sum("outline" in r.changed() for r in reads)
    result["calipers_changed"] = sum("calipers" in r.changed() for r in reads)
    result["long_axis_change"] = {"n": len(moved), "median": float(np.median(moved)) if moved else None,
                                  "over_10_percent": int(sum(m > 0.10 for m in moved))}
    with_outcome = [r for r in reads if r.label() is not None]
    if with_outcome:
        truth = [r.label() for r in with_outcome]
        result["against_outcome"] = {
            "model": _rates(truth, [r.proposal.get("decision") == "malignant" for r in with_outcome]),
            "radiologist": _rates(truth, [r.assessment()[0].level in SUSPICIOUS for r in with_outcome]),
            "model_proposal_level": _rates(truth, [assess(r.proposal.get("categories") or {}).level in SUSPICIOUS
                                                   for r in with_outcome]),
        }
    return result


def format_agreement(result: dict[str, Any]) -> str:
    lines = [f"{result['reads']} signed read(s)"]
    for name, entry in result["categories"].items():
        kappa = f", kappa {entry['kappa']:.2f}" if "kappa" in entry else ""
        lines.append(f"{name:<15} proposed {entry['proposed']:>4}, kept {entry['kept']:>4}{kappa}")
    level, action = result["level"], result["recommendation"]
    lines.append(f"TR level       proposed {level['proposed']:>4}, agreed {level['agreed']:>4}")
    lines.append(f"recommendation proposed {action['proposed']:>4}, agreed {action['agreed']:>4}")
    change = result["long_axis_change"]
    lines.append(f"outline changed in {result['outline_changed']}, calipers in {result['calipers_changed']}; long axis moved "
                 + (f"by a median {change['median']:.0%}, more than 10% in {change['over_10_percent']} of {change['n']}"
                    if change["n"] else "(no calipers to compare)"))
    for who, rates in result.get("against_outcome", {}).items():
        sensitivity = "n/a" if rates["sensitivity"] is None else f"{rates['sensitivity']:.2f}"
        specificity = "n/a" if rates["specificity"] is None else f"{rates['specificity']:.2f}"
        lines.append(f"against outcomes ({rates['malignant']} malignant, {rates['benign']} benign), {who}: "
                     f"sensitivity {sensitivity}, specificity {specificity}")
    return "\n".join(lines)
