"""``thyronet predict|explain|localise|analyse|export``: using a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thyronet.errors import ThyronetError

# the names are checked when the command runs (an unknown one is told the others), so that --help needs no torch
METHOD_HELP = "class activation map: gradcam (default), gradcam++, hirescam, xgradcam, layercam or eigencam"

LAYER_HELP = "explain this layer of the network (e.g. layer3: finer cells) instead of its last stage"


def _backend(args: argparse.Namespace):
    """(the model named on the command line, the inputs): a checkpoint and the inputs after it, or
    --onnx FILE, and then every positional is an input."""
    from thyronet.inference.backends import load_backend

    if getattr(args, "onnx", None):
        return load_backend(args.onnx), [args.checkpoint, *args.inputs] if args.checkpoint else list(args.inputs)
    if not args.checkpoint:
        raise ThyronetError("give a checkpoint (a .ckpt file or run folder) or --onnx FILE")
    return load_backend(args.checkpoint), list(args.inputs)


def _predict_inputs(args: argparse.Namespace, backend, inputs: list[str]):
    from thyronet.data.region import parse_box
    from thyronet.inference.answers import predict_inputs

    try:
        box = parse_box(args.box) if getattr(args, "box", None) else None
    except ValueError as error:
        raise ThyronetError(str(error)) from None
    return predict_inputs(backend, inputs, box, refuse_ood=getattr(args, "refuse_ood", False))


def _predict(args: argparse.Namespace) -> int:
    from thyronet.apps.explain import overlays
    from thyronet.apps.report import write_report
    from thyronet.data.refusals import tally_files
    from thyronet.inference.answers import format_predictions, write_predictions

    if args.secondary_capture and not args.dicom_out:
        raise ThyronetError("--secondary-capture goes with --dicom-out DIR (it is written beside the SR and SEG)")
    backend, inputs = _backend(args)
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        return _predict_archive(args, backend, inputs)
    answers = _predict_inputs(args, backend, inputs)
    predictions = [a.prediction for a in answers]
    print(format_predictions(predictions))
    if args.out:
        write_predictions(predictions, Path(args.out))
        print(f"wrote {args.out}")
    nodules = []
    if args.group_by or args.nodules_out:
        from thyronet.inference.nodules import format_nodules, group_answers, write_nodules

        nodules = group_answers(backend, answers, args.group_by or "case")
        print(format_nodules(nodules))
        if args.nodules_out:
            write_nodules(nodules, backend.calibration.threshold, Path(args.nodules_out))
            print(f"wrote {args.nodules_out}")
    if args.report:
        write_report(Path(args.report), backend, overlays(backend, answers, "gradcam"), nodules)
        print(f"wrote {args.report}")
    unwritten = _write_dicom(answers, Path(args.dicom_out), backend.name, args.secondary_capture, nodules) if args.dicom_out else 0
    print(tally_files((str(p.source_file), p.error) for p in predictions).line())
    return 0 if unwritten == 0 and all(p.error is None for p in predictions) else 1


def _predict_archive(args: argparse.Namespace, backend, inputs: list[str]) -> int:
    """Inputs enumerated lazily, predicted in chunks by one or many processes, into --out DIR."""
    from thyronet.inference.archive import ArchiveJob, predict_archive

    if not inputs:
        raise ThyronetError("no input images given")
    if args.box or args.report or args.dicom_out or args.group_by or args.nodules_out:
        raise ThyronetError("--box, --report, --dicom-out, --group-by and --nodules-out answer a few images; an archive "
                            "prediction (--out DIR) takes none")
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    job = ArchiveJob(str(Path(args.checkpoint or args.onnx).resolve()), [str(Path(i).resolve()) for i in inputs],
                     args.chunk_size, args.refuse_ood)
    summary = predict_archive(backend, job, Path(args.out), resume=args.resume, batch_size=args.batch_size,
                              workers=args.workers, log_every=args.log_every, parquet=args.parquet,
                              trainer_options={"accelerator": args.accelerator, "devices": devices,
                                               "num_nodes": args.num_nodes, "strategy": args.strategy})
    if summary:
        print(f"{summary['images']} images: {summary['malignant']} malignant, {summary['benign']} benign, "
              f"{summary['flagged_ood']} flagged unlike the training images; wrote {Path(args.out) / 'predictions.csv'}"
              f"{' and .parquet' if args.parquet else ''} and summary.json")
        print(summary["tally"])
        return 0 if summary["errors"] == 0 else 1
    return 0


def _write_dicom(answers, out: Path, model_name: str, secondary_capture: bool, nodules=()) -> int:
    """DICOM SEG and SR (and the overlay's Secondary Capture) beside every answered DICOM input,
    each SR with its nodule's combined answer when ``nodules`` groups them; other inputs are said
    to have none. Returns how many answered DICOM inputs got no results: each is one line, and the
    others are written whatever one of them does."""
    from thyronet.apps.dicom_out import write_dicom_results
    from thyronet.data.imageio import is_dicom
    from thyronet.errors import DataError

    nodule_of = {id(view): nodule for nodule in nodules for view in nodule.views}
    unwritten = 0
    for answer in answers:
        source = answer.prediction.source_file
        if answer.prediction.error:
            continue
        if not is_dicom(source):
            print(f"{source}: not a DICOM file: no SR or SEG written")
            continue
        try:
            for path in write_dicom_results(source, answer, out, model_name, secondary_capture, nodule_of.get(id(answer))):
                print(f"wrote {path}")
        except DataError as error:
            unwritten += 1
            print(f"{error.path}: no SR or SEG written: {error.problem}", file=sys.stderr)
        except Exception as error:  # a source the writer does not cope with: said, and the others are written
            unwritten += 1
            problem = " ".join(str(error).split())
            print(f"{source}: no SR or SEG written: {error.__class__.__name__}: {problem}", file=sys.stderr)
    return unwritten


def _explain(args: argparse.Namespace) -> int:
    from thyronet.apps.explain import write_explanations

    backend, inputs = _backend(args)
    written = write_explanations(backend, _predict_inputs(args, backend, inputs), Path(args.out), args.method, args.layer)
    for prediction, path in written:
        if path is None:
            print(f"{prediction.input}: error: {prediction.error}", file=sys.stderr)
        else:
            print(f"{prediction.input}: P(malignant) {prediction.probability:.3f} -> {path}")
    return 1 if any(path is None for _, path in written) else 0


def _segment(args: argparse.Namespace) -> int:
    from thyronet.apps.segment import segment_records
    from thyronet.data import open_inputs
    from thyronet.inference.segmenter import Segmenter

    segmenter = Segmenter.load(args.checkpoint)
    collection = open_inputs(args.inputs)
    rows = segment_records(segmenter, collection.images, Path(args.out), collection.issues)
    for row in rows:
        size = "" if row.width_px is None else f"  box {row.x0},{row.y0},{row.x1},{row.y1}  {row.width_px}x{row.height_px} px"
        mm = "" if row.width_mm is None else f" = {row.width_mm}x{row.height_mm} mm"
        print(f"{row.file}: {row.status}{size}{mm}")
    print(f"wrote {Path(args.out) / 'segments.csv'}, masks and overlays")
    return 1 if any(r.status.startswith("error") for r in rows) else 0


def _localise(args: argparse.Namespace) -> int:
    from thyronet.data import open_source
    from thyronet.data.locate import resolve_data_path
    from thyronet.evaluation.localisation import localise_models

    rows = localise_models(args.checkpoints, open_source(resolve_data_path(args.data)), args.method, args.layer,
                           args.all_images)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| model | images | CAM mass inside outline | pointing-game hit rate | outline area (chance) |")
    print("| --- | ---: | --- | ---: | ---: |")
    for row in rows:
        print(f"| {row['model']} | {row['images']} | {row['mass_inside_mean']:.3f} ± {row['mass_inside_std']:.3f} "
              f"| {row['pointing_hit_rate']:.3f} | {row['outline_area_share']:.3f} |")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from thyronet.evaluation.analysis import analyse_run

    run = Path(args.run)
    _, text = analyse_run(run, args.data)
    print(text)
    print(f"wrote {run / 'errors_by_category.md'} and {run / 'errors_by_category.png'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.convert:
        from thyronet.inference.checkpoint import convert_checkpoint

        if not args.out:
            raise ThyronetError("--convert OLD.ckpt needs --out NEW.ckpt")
        print(f"wrote {convert_checkpoint(args.convert, args.out)} (plain types only)")
        return 0
    if not args.checkpoint or not (args.onnx or args.package):
        raise ThyronetError("give a checkpoint or run folder and --onnx FILE and/or --package DIR|FILE.zip "
                            "(or --convert OLD.ckpt --out NEW.ckpt)")
    if args.package:
        from thyronet.apps.export import write_package

        print(f"wrote {write_package(args.checkpoint, args.package)} (safetensors weights, config, calibration, gate, "
              "model card and a manifest of SHA-256s; predict, serve, evaluate and segment take it)")
    if args.onnx:
        from thyronet.inference.backends import export_backend, load_backend

        backend = load_backend(args.checkpoint)
        path, *segmenter = export_backend(backend, args.onnx)
        data = backend.config.data
        print(f"wrote {path} (input: batch x {data.in_chans} x {data.preprocess.size} x {data.preprocess.size}; "
              "preprocessing and calibration stored in its metadata)")
        for extra in segmenter:
            print(f"wrote {extra} (the segmenter that finds the nodule's region; keep it beside {path.name})")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:

    predict = subcommands.add_parser("predict", help="calibrated probability of malignancy and decision for new images")
    predict.add_argument("checkpoint", nargs="?", help="a .ckpt file or run folder")
    predict.add_argument("inputs", nargs="*", help="image or DICOM files, folders of them, or a CSV manifest")
    predict.add_argument("--onnx", metavar="FILE", help="run an ONNX export through onnxruntime instead of a checkpoint")
    predict.add_argument("--out", help="write the predictions as .csv or .json; a folder (no such suffix): predict an "
                         "archive in chunks, resumable, across processes (below)")
    predict.add_argument("--report", metavar="HTML", help="write a self-contained HTML report (with Grad-CAM for checkpoints)")
    predict.add_argument("--group-by", metavar="RULE", help="one answer per nodule from its views: case (a DDTI case, a "
                         "manifest's group column), series (a DICOM series), file, or pattern:REGEX on the file name")
    predict.add_argument("--nodules-out", metavar="CSV", help="write one row per nodule (implies --group-by case)")
    predict.add_argument("--dicom-out", metavar="DIR", help="for DICOM inputs, write a DICOM SEG of the nodule and a DICOM SR "
                         "(TID 1500: probability, decision, descriptors, TI-RADS, size, ACR recommendation) here")
    predict.add_argument("--secondary-capture", action="store_true", help="with --dicom-out, also a Secondary Capture: "
                         "the frame with the nodule's contour and the answer burned in, for viewers that show neither SEG nor SR")
    predict.add_argument("--box", metavar="X0,Y0,X1,Y1", help="the nodule's box in input pixels, instead of the predicted one "
                         "(region-of-interest models)")
    predict.add_argument("--refuse-ood", action="store_true", help="refuse, instead of warning about, inputs unlike the "
                         "thyroid ultrasound the model learnt (out-of-distribution score over 1)")
    archive = predict.add_argument_group("archive prediction (--out DIR)")
    archive.add_argument("--resume", action="store_true", help="continue an interrupted archive prediction in --out DIR")
    archive.add_argument("--workers", type=int, default=0,
                         help="data-loader processes decoding images (default 0: in the predicting process)")
    archive.add_argument("--batch-size", type=int, default=32)
    archive.add_argument("--chunk-size", type=int, default=1000, help="images per written part (default %(default)s)")
    archive.add_argument("--devices", default="1", help="processes (CPU) or GPUs per machine (passed to Lightning)")
    archive.add_argument("--num-nodes", type=int, default=1, help="machines (passed to Lightning)")
    archive.add_argument("--strategy", default="auto", help="auto, ddp, ... (passed to Lightning)")
    archive.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto (passed to Lightning)")
    archive.add_argument("--parquet", action="store_true",
                         help="also write predictions.parquet (typed columns; needs the parquet extra: pip install 'thyronet[parquet]')")
    archive.add_argument("--log-every", type=int, default=1000, help="images between progress lines when not on a terminal")
    predict.set_defaults(handler=_predict)

    explain = subcommands.add_parser("explain", help="Grad-CAM overlays beside the input, as PNG files")
    explain.add_argument("checkpoint", help="a .ckpt file or run folder")
    explain.add_argument("inputs", nargs="+", help="image or DICOM files or folders")
    explain.add_argument("--method", default="gradcam", help=METHOD_HELP)
    explain.add_argument("--layer", help=LAYER_HELP)
    explain.add_argument("--out", default="explanations", help="folder for the PNGs (default: %(default)s)")
    explain.add_argument("--box", metavar="X0,Y0,X1,Y1", help="the nodule's box in input pixels, instead of the predicted one")
    explain.set_defaults(handler=_explain)

    segment = subcommands.add_parser("segment", help="find the nodule: mask, contour overlay, box and size per image")
    segment.add_argument("checkpoint", help="a segmentation checkpoint or run folder (or a classifier run that carries one)")
    segment.add_argument("inputs", nargs="+", help="image or DICOM files, folders of them, or a CSV manifest")
    segment.add_argument("--out", default="segments", help="folder for masks, overlays and segments.csv (default: %(default)s)")
    segment.set_defaults(handler=_segment)

    localise = subcommands.add_parser("localise", help="does the heat sit on the nodule? CAM mass in outline, pointing game")
    localise.add_argument("checkpoints", nargs="+", help="checkpoints (or run folders) to compare")
    localise.add_argument("--data", help="DDTI folder with outlines (default: $THYRONET_DDTI, then ../shared/data/ddti)")
    localise.add_argument("--method", default="gradcam", help=METHOD_HELP)
    localise.add_argument("--layer", help=LAYER_HELP)
    localise.add_argument("--all-images", action="store_true", help="all outlined images, not only the run's test cases")
    localise.add_argument("--json", action="store_true")
    localise.set_defaults(handler=_localise)

    analyse = subcommands.add_parser("analyse", help="error rate by composition, echogenicity, margins, calcifications, TIRADS")
    analyse.add_argument("run", help="a finished run folder or CV folder (its held-out predictions)")
    analyse.add_argument("--data", help="the DDTI folder (default: the run's data path)")
    analyse.set_defaults(handler=_analyse)

    export = subcommands.add_parser(
        "export", help="export a checkpoint to ONNX or to a model package for sharing; convert an old checkpoint")
    export.add_argument("checkpoint", nargs="?", help="a .ckpt file or run folder")
    export.add_argument("--onnx", metavar="FILE", help="an ONNX file to write (dynamic batch; a run that finds the nodule "
                                                      "also writes its segmenter beside it)")
    export.add_argument("--package", metavar="DIR|FILE.zip", help="a model package to write: no pickle, hashes checked on load")
    export.add_argument("--convert", metavar="OLD.ckpt", help="rewrite an older checkpoint holding numpy values or paths in "
                                                              "plain types (nothing else is admitted; no full unpickle)")
    export.add_argument("--out", metavar="NEW.ckpt", help="where --convert writes")
    export.set_defaults(handler=_export)
