"""Clients of the web service for tests: an account of a given role and its API token."""

from __future__ import annotations

from fastapi.testclient import TestClient


def bearer(app, role: str, name: str | None = None) -> dict[str, str]:
    """The header of an API token for a new account of ``role`` in the app's account store."""
    accounts = app.state.access.accounts
    name = name or f"{role}-{len(accounts.users())}"
    accounts.add_user(name, role)
    return {"Authorization": f"Bearer {accounts.create_token(f'{name}-token', name)}"}


def authorised_client(app, role: str = "viewer") -> TestClient:
    """A test client that calls as a new user of ``role``."""
    return TestClient(app, headers=bearer(app, role))
