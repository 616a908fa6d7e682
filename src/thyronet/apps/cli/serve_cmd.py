"""``thyronet serve``: the web page and REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse


def _check_model(path: str) -> str | None:
    """Load the model once in a throw-away process: its error, or None (run by ``--workers N``, so
    that the server process itself never holds a model beside its workers' copies)."""
    from thyronet.errors import ThyronetError
    from thyronet.inference.backends import load_backend

    try:
        load_backend(path)
    except ThyronetError as error:
        return str(error)
    return None


def _serve(args: argparse.Namespace) -> int:
    import json
    import multiprocessing
    import os

    import uvicorn

    from thyronet.errors import ThyronetError

    if args.workers < 1:
        raise ThyronetError(f"--workers: expected 1 or more processes, got {args.workers}")
    settings = {"max_upload_bytes": int(args.max_upload_mb * 1024 * 1024), "timeout_s": args.timeout,
                "explain": not args.no_explain, "refuse_ood": args.refuse_ood}  # ServiceSettings' fields
    if args.workers == 1:
        from thyronet.apps.serve.app import ServiceSettings, create_app

        app = create_app(args.checkpoint, ServiceSettings(**settings))
    else:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            problem = pool.apply(_check_model, (str(args.checkpoint),))
        if problem:
            raise ThyronetError(problem)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: reachable from other machines; put it behind the hospital's "
              "authentication and TLS")
    print(f"thyronet: http://{args.host}:{args.port}/  (API docs at /docs; {args.workers} worker process(es))")
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    # uvicorn's workers each import the app factory and load the model once, behind the one port
    # and share the cores: each worker's torch threads as many as its share
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    os.environ["THYRONET_SERVE"] = json.dumps({"model": str(args.checkpoint), "settings": settings, "threads": threads})
    uvicorn.run("thyronet.apps.serve.app:app_from_environment", factory=True, workers=args.workers,
                host=args.host, port=args.port, log_level="warning")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    serve = subcommands.add_parser("serve", help="web page and REST API for clinicians")
    serve.add_argument("checkpoint", help="a .ckpt file, run folder, CV folder (fold ensemble) or ONNX export")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes answering requests, each with the model loaded "
                       "once, behind the one port (default: %(default)s)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0)
    serve.add_argument("--timeout", type=float, default=30.0, help="seconds per prediction before a 504")
    serve.add_argument("--no-explain", action="store_true", help="skip Grad-CAM (faster)")
    serve.add_argument("--refuse-ood", action="store_true", help="answer 422 for images unlike the thyroid ultrasound the "
                       "model learnt, instead of a warning in the answer")
    serve.set_defaults(handler=_serve)
