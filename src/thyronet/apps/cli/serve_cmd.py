"""``thyronet serve``: the web page and REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse


def _serve(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import os

    import uvicorn

    from thyronet.apps.serve.app import SETTINGS_VARIABLE, ServiceSettings, create_app
    from thyronet.errors import ThyronetError

    if args.workers < 1:
        raise ThyronetError(f"--workers: expected 1 or more processes, got {args.workers}")
    settings = ServiceSettings(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), timeout_s=args.timeout,
                               explain=not args.no_explain, refuse_ood=args.refuse_ood)
    app = create_app(args.checkpoint, settings)  # loaded here too, so that a bad model is one line before any worker starts
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: reachable from other machines; put it behind the hospital's "
              "authentication and TLS")
    print(f"thyronet: http://{args.host}:{args.port}/  (API docs at /docs; {args.workers} worker process(es))")
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    del app
    # uvicorn's workers each import the app factory and load the model once, behind the one port
    os.environ[SETTINGS_VARIABLE] = json.dumps({"model": str(args.checkpoint), "settings": dataclasses.asdict(settings)})
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
