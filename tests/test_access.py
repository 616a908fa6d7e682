"""Accounts, tokens and the audit trail, and the commands that manage them."""

from __future__ import annotations

import json

import pytest

from thyronet.apps.access import Accounts, AuditLog, verify_audit_log
from thyronet.apps.cli import main
from thyronet.errors import ThyronetError


def test_passwords_are_argon2_hashes_and_the_store_is_owner_only(tmp_path):
    accounts = Accounts(tmp_path / "state")
    password = accounts.add_user("dr-a", "radiologist")
    assert accounts.authenticate("dr-a", password).role == "radiologist"
    assert accounts.authenticate("dr-a", password + "x") is None and accounts.authenticate("nobody", password) is None
    stored = accounts.path.read_bytes()
    assert password.encode() not in stored and b"$argon2id$" in stored
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700" and oct(accounts.path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ThyronetError, match="exists already"):
        accounts.add_user("dr-a", "viewer")
    with pytest.raises(ThyronetError, match="unknown role"):
        accounts.add_user("dr-b", "superuser")


def test_tokens_are_stored_as_digests_and_die_with_revocation_or_their_user(tmp_path):
    accounts = Accounts(tmp_path)
    accounts.add_user("robot", "viewer")
    token = accounts.create_token("nightly", "robot")
    assert token.encode() not in accounts.path.read_bytes()
    assert accounts.user_for_token(token).name == "robot" and accounts.user_for_token(token + "x") is None
    accounts.revoke_token("nightly")
    assert accounts.user_for_token(token) is None
    second = accounts.create_token("weekly", "robot")
    accounts.disable("robot")
    assert accounts.user_for_token(second) is None


def test_a_user_chooses_a_password_of_at_least_twelve_characters(tmp_path):
    accounts = Accounts(tmp_path)
    one_time = accounts.add_user("dr-c", "viewer")
    assert accounts.user("dr-c").must_change_password
    with pytest.raises(ThyronetError, match="at least 12"):
        accounts.change_password("dr-c", one_time, "short")
    with pytest.raises(ThyronetError, match="current password is wrong"):
        accounts.change_password("dr-c", "wrong", "a long enough passphrase")
    accounts.change_password("dr-c", one_time, "a long enough passphrase")
    assert not accounts.user("dr-c").must_change_password
    assert accounts.authenticate("dr-c", one_time) is None


@pytest.mark.parametrize("tamper", ["edit", "remove", "swap"])
def test_audit_verify_finds_an_edited_removed_or_reordered_line(tmp_path, capsys, tamper):
    log = AuditLog(tmp_path / "audit.jsonl")
    for number in range(4):
        log.record("dr-a", "radiologist", "predict", "ok", uid=f"1.2.3.{number}")
    assert main(["audit", "verify", str(log.path)]) == 0 and "4 line(s), chain intact" in capsys.readouterr().out
    lines = log.path.read_text().splitlines()
    if tamper == "edit":
        entry = json.loads(lines[1])
        entry["user"] = "someone else"
        lines[1] = json.dumps(entry, sort_keys=True)
    elif tamper == "remove":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    check = verify_audit_log(log.path)
    assert check.problem.startswith("line 2:" if tamper != "remove" else "line 3:")
    assert main(["audit", "verify", str(log.path)]) == 1 and "chain broken" in capsys.readouterr().out


def test_the_commands_manage_users_and_tokens_and_record_it(tmp_path, capsys):
    state = str(tmp_path / "state")
    assert main(["users", "add", "dr-d", "--role", "radiologist", "--state", state]) == 0
    password = capsys.readouterr().out.strip().splitlines()[-1]
    assert Accounts(tmp_path / "state").authenticate("dr-d", password) is not None
    assert main(["tokens", "create", "bridge", "--user", "dr-d", "--state", state]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert Accounts(tmp_path / "state").user_for_token(token).name == "dr-d"
    assert main(["users", "disable", "dr-d", "--state", state]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--state", state]) == 0 and "disabled" in capsys.readouterr().out
    assert main(["tokens", "revoke", "nope", "--state", state]) == 2
    actions = [json.loads(line)["action"] for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert actions == ["user add", "token create", "user disable"]
    assert password not in (tmp_path / "state" / "audit.jsonl").read_text()


def test_serve_refuses_to_expose_itself_without_accounts_or_tls(tmp_path, capsys):
    state = str(tmp_path / "state")
    assert main(["serve", "no-model", "--host", "0.0.0.0", "--state", state]) == 2
    assert "without accounts" in capsys.readouterr().err
    main(["users", "add", "dr-e", "--role", "admin", "--state", state])
    assert main(["serve", "no-model", "--host", "0.0.0.0", "--state", state]) == 2
    assert "without TLS" in capsys.readouterr().err
    assert main(["serve", "no-model", "--certfile", "cert.pem", "--state", state]) == 2
    assert "go together" in capsys.readouterr().err


def test_a_demonstration_on_this_machine_gets_a_first_admin(tmp_path, capsys):
    state = tmp_path / "state"
    assert main(["serve", str(tmp_path / "no-model"), "--state", str(state)]) == 2  # no model: but the admin exists
    out = capsys.readouterr().out
    password = out.split("one-time password\n")[1].splitlines()[0]
    user = Accounts(state).authenticate("admin", password)
    assert user.role == "admin" and user.must_change_password
