"""``thyronet users``, ``thyronet tokens`` and ``thyronet audit``: the service's accounts, API
tokens and audit trail, in the state folder that ``thyronet serve --state`` uses."""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path


def _store(args: argparse.Namespace):
    from thyronet.apps.access import Accounts, AuditLog

    state = Path(args.state)
    return Accounts(state), AuditLog(state / "audit.jsonl")


def _operator() -> str:
    """Who ran the command, as the audit trail names them (a command has no account of its own)."""
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"


def _users(args: argparse.Namespace) -> int:
    accounts, audit = _store(args)
    if args.action == "list":
        for user in accounts.users():
            state = "disabled" if user.disabled else ("one-time password" if user.must_change_password else "active")
            print(f"{user.name:<24} {user.role:<12} {state}")
        return 0
    if args.action == "add":
        password = accounts.add_user(args.name, args.role)
        audit.record(_operator(), "admin", "user add", "ok", detail=f"{args.name} as {args.role}")
        print(f"user {args.name} ({args.role}) created; one-time password (shown once, to be changed at first "
              f"login):\n{password}")
    elif args.action == "disable":
        accounts.disable(args.name)
        audit.record(_operator(), "admin", "user disable", "ok", detail=args.name)
        print(f"user {args.name} disabled: its sessions ended and its tokens no longer work")
    elif args.action == "passwd":
        password = accounts.reset_password(args.name)
        audit.record(_operator(), "admin", "user password reset", "ok", detail=args.name)
        print(f"new one-time password for {args.name} (shown once, to be changed at first login):\n{password}")
    return 0


def _tokens(args: argparse.Namespace) -> int:
    accounts, audit = _store(args)
    if args.action == "list":
        for token in accounts.tokens():
            created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(token.created))
            print(f"{token.name:<24} {token.user:<24} created {created} UTC{'  revoked' if token.revoked else ''}")
        return 0
    if args.action == "create":
        token = accounts.create_token(args.name, args.user)
        audit.record(_operator(), "admin", "token create", "ok", detail=f"{args.name} for {args.user}")
        print(f"API token {args.name} for {args.user} (shown once; send it as 'Authorization: Bearer <token>'):\n{token}")
    elif args.action == "revoke":
        accounts.revoke_token(args.name)
        audit.record(_operator(), "admin", "token revoke", "ok", detail=args.name)
        print(f"token {args.name} revoked")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from thyronet.apps.access import verify_audit_log

    check = verify_audit_log(Path(args.log))
    if check.problem:
        print(f"{args.log}: chain broken at {check.problem}; the {check.lines} line(s) before it are intact")
        return 1
    print(f"{args.log}: {check.lines} line(s), chain intact; last hash {check.last_hash} (keep it elsewhere to detect "
          "lines removed from the end)")
    return 0


def _state_option(parser: argparse.ArgumentParser) -> None:
    from thyronet.apps.access import default_state_dir

    parser.add_argument("--state", default=str(default_state_dir()),
                        help="the service's state folder, as given to `serve --state` (default: %(default)s)")


def register(subcommands: argparse._SubParsersAction) -> None:
    from thyronet.apps.access import ROLES

    users = subcommands.add_parser("users", help="the web service's accounts: add, list, disable, reset a password")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create an account; prints its one-time password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True,
                     help="viewer: sees results; radiologist: also edits and signs; admin: also manages users and models")
    actions.add_parser("list", help="every account with its role and state")
    for action, text in (("disable", "disable an account (its sessions and tokens stop working)"),
                         ("passwd", "a new one-time password for an account")):
        actions.add_parser(action, help=text).add_argument("name")
    for parser in actions.choices.values():
        _state_option(parser)
    users.set_defaults(handler=_users)

    tokens = subcommands.add_parser("tokens", help="API tokens for scripts: create, list, revoke")
    actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="a new token (printed once, stored hashed)")
    create.add_argument("name", help="what the token is for, e.g. pacs-bridge")
    create.add_argument("--user", required=True, help="the account the token acts as (its role applies)")
    actions.add_parser("list", help="every token, its account and whether it is revoked")
    actions.add_parser("revoke", help="revoke a token").add_argument("name")
    for parser in actions.choices.values():
        _state_option(parser)
    tokens.set_defaults(handler=_tokens)

    audit = subcommands.add_parser("audit", help="the service's audit trail")
    actions = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check the hash chain of an audit log (exit 1 if broken)")
    verify.add_argument("log", help="the audit log, e.g. STATE/audit.jsonl")
    audit.set_defaults(handler=_audit)
