"""``thyronet serve``: the web page and REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
from pathlib import Path


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


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_access(args: argparse.Namespace) -> None:
    """Refuse to expose the service without accounts or TLS (unless ``--insecure``); on this machine
    only, a first administrator is created for the demonstration and its one-time password printed."""
    from thyronet.apps.access import Accounts, AuditLog
    from thyronet.errors import ThyronetError

    if bool(args.certfile) != bool(args.keyfile):
        raise ThyronetError("--certfile and --keyfile go together (the server's certificate and its private key)")
    accounts = Accounts(Path(args.state))
    has_users = any(not user.disabled for user in accounts.users())
    if args.host not in LOOPBACK and not args.insecure:
        if not has_users:
            raise ThyronetError(f"refusing to serve on {args.host} without accounts: create one with "
                                f"`thyronet users add NAME --role admin --state {args.state}` (or --insecure)")
        if not args.certfile:
            raise ThyronetError(f"refusing to serve on {args.host} without TLS: passwords and images would cross the "
                                "network in clear; give --certfile and --keyfile, or serve on 127.0.0.1 behind a "
                                "reverse proxy that terminates TLS (or --insecure)")
    if not has_users:
        password = accounts.add_user("admin", "admin")
        AuditLog(Path(args.state) / "audit.jsonl").record("serve (command line)", "admin", "user add", "ok",
                                                          detail="admin as admin, the first account")
        print(f"no accounts yet in {args.state}: created user 'admin' (role admin) with the one-time password\n"
              f"{password}\nlog in at /login and choose your own; add others with `thyronet users add`")


def _serve(args: argparse.Namespace) -> int:
    import json
    import multiprocessing
    import os

    import uvicorn

    from thyronet.errors import ThyronetError

    if args.workers < 1:
        raise ThyronetError(f"--workers: expected 1 or more processes, got {args.workers}")
    _check_access(args)
    tls = {"ssl_certfile": args.certfile, "ssl_keyfile": args.keyfile} if args.certfile else {}
    settings = {"max_upload_bytes": int(args.max_upload_mb * 1024 * 1024), "timeout_s": args.timeout,
                "explain": not args.no_explain, "refuse_ood": args.refuse_ood, "state_dir": str(args.state),
                "tls": bool(tls), "store_dir": args.store, "send_to": args.send_to}  # ServiceSettings' fields
    if args.workers == 1:
        from thyronet.apps.serve.app import ServiceSettings, create_app

        app = create_app(args.checkpoint, ServiceSettings(**settings))
    else:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            problem = pool.apply(_check_model, (str(args.checkpoint),))
        if problem:
            raise ThyronetError(problem)
    scheme = "https" if tls else "http"
    print(f"thyronet: {scheme}://{args.host}:{args.port}/  (the API's schema at /openapi.json, after login; "
          f"{args.workers} worker process(es))")
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **tls)
        return 0
    # uvicorn's workers each import the app factory and load the model once, behind the one port
    # and share the cores: each worker's torch threads as many as its share
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    os.environ["THYRONET_SERVE"] = json.dumps({"model": str(args.checkpoint), "settings": settings, "threads": threads})
    uvicorn.run("thyronet.apps.serve.app:app_from_environment", factory=True, workers=args.workers,
                host=args.host, port=args.port, log_level="warning", **tls)
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    serve = subcommands.add_parser("serve", help="web page and REST API for clinicians")
    serve.add_argument("checkpoint", help="a .ckpt file, run folder, CV folder (fold ensemble) or ONNX export")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only; "
                       "any other needs accounts and TLS)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes answering requests, each with the model loaded "
                       "once, behind the one port (default: %(default)s)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0)
    serve.add_argument("--timeout", type=float, default=30.0, help="seconds per prediction before a 504")
    serve.add_argument("--no-explain", action="store_true", help="skip Grad-CAM (faster)")
    serve.add_argument("--refuse-ood", action="store_true", help="answer 422 for images unlike the thyroid ultrasound the "
                       "model learnt, instead of a warning in the answer")
    from thyronet.apps.access import default_state_dir

    serve.add_argument("--state", default=str(default_state_dir()),
                       help="folder of the accounts and the audit trail, owner-only (default: %(default)s)")
    serve.add_argument("--store", help="the reading store (a folder, created owner-only): a worklist at /reads where "
                       "radiologists confirm, correct and sign the model's proposals; a dataset `thyronet train` reads")
    serve.add_argument("--send-to", action="append", default=[], metavar="HOST:PORT:AET",
                       help="with --store: a PACS that receives each signed read's SR by C-STORE (repeatable)")
    serve.add_argument("--certfile", help="TLS: the server's certificate (PEM); with --keyfile, serves HTTPS")
    serve.add_argument("--keyfile", help="TLS: the certificate's private key (PEM)")
    serve.add_argument("--insecure", action="store_true", help="allow serving beyond this machine without accounts "
                       "or TLS (a closed test network only)")
    serve.set_defaults(handler=_serve)
