"""Accounts, roles, API tokens and login sessions in one SQLite file of the service's state folder.

Passwords are hashed with Argon2id (argon2-cffi's defaults, memory-hard). API tokens and session
identifiers are 256-bit random strings, so a fast SHA-256 digest is enough to store them (what is
stored cannot be replayed, and guessing one is hopeless whatever the hash's cost); only their
digests are kept. A password set by an administrator (a new account, a reset) is a one-time
password: the account must choose its own before it may do anything else.

One connection per call keeps the store safe to share between threads and between the worker
processes of ``serve --workers N`` (SQLite locks the file; WAL lets readers go on while one writes).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from thyronet.errors import ThyronetError

# Each role may do what the roles before it may: a viewer sees results, a radiologist also edits
# and signs, an admin also manages users and models.
ROLES = ("viewer", "radiologist", "admin")
TOKEN_PREFIX = "thy_"
MIN_PASSWORD_LENGTH = 12

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    must_change_password INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), digest TEXT UNIQUE NOT NULL,
    created REAL NOT NULL, revoked REAL);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), csrf TEXT NOT NULL, expires REAL NOT NULL);
"""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool = False
    must_change_password: bool = False

    def may(self, role: str) -> bool:
        """Whether this user's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Token:
    name: str
    user: str
    created: float
    revoked: bool


def default_state_dir() -> Path:
    """``$THYRONET_STATE``, else ``$XDG_STATE_HOME/thyronet`` (``~/.local/state/thyronet``)."""
    if os.environ.get("THYRONET_STATE"):
        return Path(os.environ["THYRONET_STATE"])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "thyronet"


def owner_only_folder(path: Path) -> Path:
    """``path`` created if needed and readable by its owner only (it holds credentials or patient data)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_password() -> str:
    """A one-time password: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


class Accounts:
    """The user, token and session store at ``state_dir / "accounts.sqlite"``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = owner_only_folder(Path(state_dir)) / "accounts.sqlite"
        self.hasher = PasswordHasher()
        with self._db() as db:
            db.executescript(SCHEMA)
        os.chmod(self.path, 0o600)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            with db:  # one transaction: committed if the block succeeds
                yield db
        finally:
            db.close()

    # users -------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str) -> str:
        """Create an account; returns its one-time password."""
        if role not in ROLES:
            raise ThyronetError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
            raise ThyronetError(f"user name {name!r}: letters, digits, '-', '_' and '.' only, at most 64")
        password = new_password()
        try:
            with self._db() as db:
                db.execute("INSERT INTO users VALUES (?, ?, ?, 1, 0, ?)", (name, role, self.hasher.hash(password), time.time()))
        except sqlite3.IntegrityError:
            raise ThyronetError(f"user {name!r} exists already") from None
        return password

    def users(self) -> list[User]:
        with self._db() as db:
            rows = db.execute("SELECT name, role, disabled, must_change_password FROM users ORDER BY name").fetchall()
        return [User(name, role, bool(disabled), bool(change)) for name, role, disabled, change in rows]

    def user(self, name: str) -> User | None:
        return next((user for user in self.users() if user.name == name), None)

    def _existing(self, name: str) -> User:
        user = self.user(name)
        if user is None:
            raise ThyronetError(f"no user {name!r}")
        return user

    def disable(self, name: str) -> None:
        """Disable an account: its sessions end and its tokens stop working."""
        self._existing(name)
        with self._db() as db:
            db.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,))
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))

    def reset_password(self, name: str) -> str:
        """A new one-time password for ``name`` (its sessions end)."""
        self._existing(name)
        password = new_password()
        with self._db() as db:
            db.execute("UPDATE users SET password_hash = ?, must_change_password = 1 WHERE name = ?",
                       (self.hasher.hash(password), name))
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))
        return password

    def change_password(self, name: str, current: str, new: str) -> None:
        """The user's own choice of password, replacing the current one (checked)."""
        if self.authenticate(name, current) is None:
            raise ThyronetError("the current password is wrong")
        if len(new) < MIN_PASSWORD_LENGTH or new == current:
            raise ThyronetError(f"the new password must have at least {MIN_PASSWORD_LENGTH} characters and differ "
                                "from the current one")
        with self._db() as db:
            db.execute("UPDATE users SET password_hash = ?, must_change_password = 0 WHERE name = ?",
                       (self.hasher.hash(new), name))

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user whose password this is, else None (the same answer for every failure)."""
        with self._db() as db:
            row = db.execute("SELECT password_hash FROM users WHERE name = ? AND disabled = 0", (name,)).fetchone()
        if row is None:
            self.hasher.hash(password)  # as slow as a wrong password: the answer's time says nothing
            return None
        try:
            self.hasher.verify(row[0], password)
        except (VerificationError, InvalidHashError):
            return None
        return self.user(name)

    # API tokens --------------------------------------------------------------------------------
    def create_token(self, name: str, user: str) -> str:
        """A new API token for ``user``, called ``name``; the token is shown once and kept as its digest."""
        self._existing(user)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._db() as db:
                db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, NULL)", (name, user, _digest(token), time.time()))
        except sqlite3.IntegrityError:
            raise ThyronetError(f"a token called {name!r} exists already") from None
        return token

    def tokens(self) -> list[Token]:
        with self._db() as db:
            rows = db.execute("SELECT name, user, created, revoked FROM tokens ORDER BY name").fetchall()
        return [Token(name, user, created, revoked is not None) for name, user, created, revoked in rows]

    def revoke_token(self, name: str) -> None:
        with self._db() as db:
            if db.execute("UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL", (time.time(), name)).rowcount == 0:
                raise ThyronetError(f"no active token called {name!r}")

    def user_for_token(self, token: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT user FROM tokens WHERE digest = ? AND revoked IS NULL", (_digest(token),)).fetchone()
        user = self.user(row[0]) if row else None
        return user if user is not None and not user.disabled else None

    # login sessions ----------------------------------------------------------------------------
    def open_session(self, user: str, lifetime_s: float) -> tuple[str, str]:
        """A session for ``user``: its identifier (the cookie) and its CSRF token."""
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_digest(session), user, csrf, time.time() + lifetime_s))
        return session, csrf

    def session(self, session: str) -> tuple[User, str] | None:
        """The session's user and CSRF token; None when it is unknown, expired or its user disabled."""
        with self._db() as db:
            row = db.execute("SELECT user, csrf FROM sessions WHERE digest = ? AND expires >= ?",
                             (_digest(session), time.time())).fetchone()
        user = self.user(row[0]) if row else None
        return (user, row[1]) if user is not None and not user.disabled else None

    def close_session(self, session: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(session),))
