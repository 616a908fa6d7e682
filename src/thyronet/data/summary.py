"""What a data source holds: counts of cases, images, labels, TIRADS and descriptors, and issues."""

from __future__ import annotations

from collections import Counter
from typing import Any

from thyronet.data.busi import duplicate_report
from thyronet.data.records import Collection

CASE_FIELDS = ("tirads", "composition", "echogenicity", "margins", "calcifications", "sex")


def _sorted_counts(counter: Counter) -> dict[str, int]:
    return {str(k) if k is not None else "(empty)": v for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))}


def summarise(collection: Collection) -> dict[str, Any]:
    """A JSON-ready summary; descriptor counts are per case."""
    images_per_case = Counter(r.case_id for r in collection.images)
    attributes = dict(collection.case_attributes)
    for record in collection.images:
        attributes.setdefault(record.case_id, record.attributes)
    case_ids = collection.case_ids()
    summary: dict[str, Any] = {
        "source": collection.source,
        "root": str(collection.root),
        "cases": len(case_ids),
        "images": len(collection.images),
        "labels_by_case": dict(collection.label_counts("case")),
        "labels_by_image": dict(collection.label_counts("image")),
        "labelled_cases": sum(v for k, v in collection.label_counts("case").items() if k != "unlabelled"),
        "labelled_images": len(collection.labelled),
        "images_per_case": _sorted_counts(Counter(images_per_case[c] for c in case_ids)),
        "cases_with_outline": len({r.case_id for r in collection.images if r.outlines}),
    }
    fields = [f for f in CASE_FIELDS if any(a.get(f) for a in attributes.values())]
    if fields:
        summary["descriptors_by_case"] = {
            field: _sorted_counts(Counter(attributes[c].get(field) for c in case_ids if c in attributes))
            for field in fields
        }
    classes = Counter(r.attributes.get("class") for r in collection.images if r.attributes.get("class"))
    if classes:  # sources with more classes than the benign/malignant label (BUSI's normal images)
        summary["classes_by_image"] = _sorted_counts(classes)
    if any("duplicates" in r.attributes for r in collection.images):
        summary["near_duplicates"] = duplicate_report(collection)
    summary["issues"] = [str(issue) for issue in collection.issues]
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as readable text for the terminal."""
    lines = [
        f"source: {summary['source']} at {summary['root']}",
        f"cases: {summary['cases']}   images: {summary['images']}",
        f"labelled cases: {summary['labelled_cases']}  {summary['labels_by_case']}",
        f"labelled images: {summary['labelled_images']}  {summary['labels_by_image']}",
        f"images per case: {summary['images_per_case']}",
        f"cases with a nodule outline: {summary['cases_with_outline']}",
    ]
    for field, counts in summary.get("descriptors_by_case", {}).items():
        lines.append(f"{field}: {counts}")
    if "classes_by_image" in summary:
        lines.append(f"classes by image: {summary['classes_by_image']}")
    if "near_duplicates" in summary:
        found = summary["near_duplicates"]
        lines.append(f"near-duplicate groups: {found['near_duplicate_groups']} holding {found['images_in_groups']} images "
                     f"(each group is one case; {found['groups_with_mixed_classes']} groups mix classes)")
    issues = summary["issues"]
    lines.append(f"warnings: {len(issues)}")
    lines.extend(f"  {issue}" for issue in issues)
    return "\n".join(lines)
