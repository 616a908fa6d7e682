"""Who is asking, and may they: API tokens (``Authorization: Bearer``) for scripts, a session cookie
for people, roles per route, CSRF protection, a login rate limit and the security headers.

Every route declares the least role it needs with :meth:`Access.require`; only ``/health``, the
login page, its static files and the login call itself are public (the route walk in the tests
takes the routes from the app, so a new one cannot be left open by mistake). A session cookie is
HttpOnly, SameSite=Strict and Secure when served over TLS; a request it authenticates that changes
state must repeat the session's CSRF token in the ``X-CSRF-Token`` header (a token-authenticated
script needs none: no browser sends a bearer token on its own).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from thyronet.apps.access import Accounts, AuditLog, User

SESSION_COOKIE = "thyronet_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")


def security_headers(tls: bool) -> dict[str, str]:
    """The headers every answer carries (HSTS only over TLS, where it means something)."""
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
               "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
               "Cross-Origin-Opener-Policy": "same-origin"}
    if tls:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window_s`` for one client address and for one user
    name (whichever fills first); in memory, per worker process."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts, self.window_s = attempts, window_s
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def retry_after(self, *keys: str) -> float | None:
        """Seconds until a login for these keys is allowed again, None if it is allowed now."""
        now = time.monotonic()
        with self.lock:
            waits = []
            for key in keys:
                failures = self.failures[key]
                while failures and failures[0] < now - self.window_s:
                    failures.popleft()
                if len(failures) >= self.attempts:
                    waits.append(failures[0] + self.window_s - now)
            return max(waits) if waits else None

    def failed(self, *keys: str) -> None:
        with self.lock:
            for key in keys:
                self.failures[key].append(time.monotonic())


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user, and the session (with its CSRF token) when it came by cookie."""

    user: User
    session: str | None = None
    csrf: str | None = None


class Access:
    """Authentication and authorisation over one account store, recording to one audit trail."""

    def __init__(self, accounts: Accounts, audit: AuditLog, tls: bool = False, session_lifetime_s: float = 8 * 3600,
                 limiter: LoginLimiter | None = None) -> None:
        self.accounts, self.audit, self.tls = accounts, audit, tls
        self.session_lifetime_s = session_lifetime_s
        self.limiter = limiter or LoginLimiter()

    def principal(self, request: Request) -> Principal | None:
        """The caller by bearer token, else by session cookie; None if neither is valid."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential:
            user = self.accounts.user_for_token(credential.strip())
            return Principal(user) if user else None
        session = request.cookies.get(SESSION_COOKIE)
        found = self.accounts.session(session) if session else None
        return Principal(found[0], session, found[1]) if found else None

    def require(self, role: str, during_password_change: bool = False) -> Callable[[Request], Principal]:
        """A FastAPI dependency: 401 without valid credentials, 403 for a role below ``role``, a
        missing CSRF token, or an account that must first replace its one-time password (unless
        ``during_password_change``: the calls that let it do so)."""

        def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if principal is None:
                raise HTTPException(401, "authentication required: log in, or send an API token as "
                                         "'Authorization: Bearer ...'", headers={"WWW-Authenticate": "Bearer"})
            if principal.session is not None and request.method not in SAFE_METHODS:
                sent = request.headers.get(CSRF_HEADER, "")
                if not secrets.compare_digest(sent.encode(), (principal.csrf or "").encode()):
                    raise HTTPException(403, f"CSRF token missing or wrong (send the session's token as {CSRF_HEADER})")
            # a one-time password opens only the way to choose one's own (a token is a credential of its own)
            if principal.session is not None and principal.user.must_change_password and not during_password_change:
                raise HTTPException(403, "choose your own password first: this account has a one-time password")
            if not principal.user.may(role):
                raise HTTPException(403, f"this needs the {role} role; {principal.user.name} is a {principal.user.role}")
            request.state.principal = principal
            return principal

        dependency.role = role  # read by the route walk in the tests and the route table in the guide
        return dependency
