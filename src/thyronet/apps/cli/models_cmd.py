"""``thyronet models``: the registry as a table, with sizes and a latency measured on the spot."""

from __future__ import annotations

import argparse
import json


def _models(args: argparse.Namespace) -> int:
    import torch

    from thyronet.models import create_model, get_entry, list_models
    from thyronet.models.profile import count_macs, count_parameters, measure_latency

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in list_models():
        model = create_model(name, num_classes=2 if get_entry(name).task == "classify" else 1, in_chans=3)
        row = {
            "name": name,
            "group": get_entry(name).group,
            "parameters": count_parameters(model),
            "gmacs_224": round(count_macs(model, 3, 224) / 1e9, 3),
            "cam_layer": get_entry(name).cam_layer,
            "description": get_entry(name).description,
        }
        if not args.no_latency:
            row["cpu_latency_ms"] = round(measure_latency(model, 3, 224), 1)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    latency = "" if args.no_latency else f" {'CPU ms':>7}"
    print(f"{'model':<20} {'params':>12} {'GMACs':>7}{latency}  description")
    for row in rows:
        latency = "" if args.no_latency else f" {row['cpu_latency_ms']:>7.1f}"
        print(f"{row['name']:<20} {row['parameters']:>12,} {row['gmacs_224']:>7.2f}{latency}  {row['description']}")
    print(f"(classifiers: 2 classes, segmenters: 1 map; RGB input, 224x224; latency: median of 5 batch-1 forward passes "
          f"on {torch.get_num_threads()} thread(s))")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    models = subcommands.add_parser("models", help="list the registered models with size, GMACs and CPU latency")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    models.add_argument("--threads", type=int, help="torch CPU threads for the latency measurement")
    models.set_defaults(handler=_models)
