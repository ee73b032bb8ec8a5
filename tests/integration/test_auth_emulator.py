"""The Firebase Auth emulator (devstack/auth_emulator.py) and firebase-admin's verification of its tokens.

Needs only node and devstack/firebase/node_modules (no Redis, Firestore or worker: the suite's
autouse `_clean` is overridden below). What it pins down:

- tokens from the emulator's REST sign-up/sign-in are accepted by firebase-admin when
  FIREBASE_AUTH_EMULATOR_HOST is set, and give the right uid;
- tokens for another project, garbage, structurally broken and claim-edited tokens are refused;
- in emulator mode firebase-admin checks neither signature nor expiry (the emulator's tokens are
  unsigned, alg "none"): a re-encoded token with another `sub`, or an expired one, is accepted by
  `verify_id_token` alone. The project's verifier (core.adapters.firebase_auth.firebase_verifier) adds the time checks,
  and `check_revoked=True` looks the uid up in the emulator.
"""
from __future__ import annotations

import base64
import json
import os
import time
import uuid

import pytest

from devstack import auth_emulator
from devstack.auth_emulator import AuthEmulatorError, clear_accounts, sign_in, sign_up, start_auth_emulator

PROJECT = "demo-tokenbank-authtest"

try:
    auth_emulator.ensure_installed()
    _MISSING = None
except RuntimeError as exc:  # pragma: no cover - depends on the machine
    _MISSING = str(exc)

pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration suite's autouse fixture: these tests need neither Redis nor Firestore."""
    yield


@pytest.fixture(scope="module")
def emulator():
    service = start_auth_emulator(project=PROJECT)
    try:
        yield service
    finally:
        service.stop()
    assert not service.alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(service.pid, 0)  # nothing of its process group is left


@pytest.fixture(autouse=True)
def _emulator_host(emulator, monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", emulator.address)


def _app(project: str):
    import firebase_admin

    from core.bootstrap import _emulator_credential

    return firebase_admin.initialize_app(_emulator_credential(), {"projectId": project},
                                         name=f"auth-emulator-test-{project}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def app():
    import firebase_admin

    app = _app(PROJECT)
    yield app
    firebase_admin.delete_app(app)


@pytest.fixture(scope="module")
def other_app():
    import firebase_admin

    app = _app("demo-some-other-project")
    yield app
    firebase_admin.delete_app(app)


@pytest.fixture
def user(emulator):
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    uid, token = sign_up(emulator.address, email, "correct horse 1")
    return {"email": email, "uid": uid, "token": token}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _reencode(token: str, **changes) -> str:
    header, _, signature = token.split(".")
    return ".".join([header, _b64(_claims(token) | changes), signature])


def test_the_emulator_issues_unsigned_tokens_for_its_project(user):
    header = json.loads(base64.urlsafe_b64decode(user["token"].split(".")[0] + "=="))
    claims = _claims(user["token"])
    assert header["alg"] == "none"
    assert claims["aud"] == PROJECT
    assert claims["iss"] == f"https://securetoken.google.com/{PROJECT}"
    assert claims["sub"] == user["uid"]
    assert claims["exp"] > time.time() > claims["iat"] - 5


def test_firebase_admin_accepts_an_emulator_token_and_returns_its_uid(app, user):
    from firebase_admin import auth

    claims = auth.verify_id_token(user["token"], app=app)
    assert claims["uid"] == user["uid"]
    assert claims["email"] == user["email"]
    assert claims["firebase"]["sign_in_provider"] == "password"


def test_check_revoked_looks_the_user_up_in_the_emulator(app, user):
    from firebase_admin import auth

    assert auth.verify_id_token(user["token"], app=app, check_revoked=True)["uid"] == user["uid"]
    assert auth.get_user(user["uid"], app=app).email == user["email"]


def test_sign_in_gives_a_fresh_token_for_the_same_uid(app, emulator, user):
    from firebase_admin import auth

    uid, token = sign_in(emulator.address, user["email"], "correct horse 1")
    assert uid == user["uid"]
    assert auth.verify_id_token(token, app=app)["uid"] == user["uid"]
    with pytest.raises(AuthEmulatorError, match="INVALID_LOGIN_CREDENTIALS|INVALID_PASSWORD"):
        sign_in(emulator.address, user["email"], "wrong password")


def test_a_token_for_another_project_is_refused(other_app, user):
    from firebase_admin import auth

    with pytest.raises(auth.InvalidIdTokenError, match="aud"):
        auth.verify_id_token(user["token"], app=other_app)


@pytest.mark.parametrize("garbage", ["not-a-token", "a.b.c", "eyJhbGciOiJub25lIn0..", "x" * 2000])
def test_garbage_is_refused(app, garbage):
    from firebase_admin import auth

    with pytest.raises(auth.InvalidIdTokenError):
        auth.verify_id_token(garbage, app=app)


def test_a_tampered_token_is_refused(app, user):
    from firebase_admin import auth

    header, payload, signature = user["token"].split(".")
    corrupted = ".".join([header, payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:], signature])
    truncated = ".".join([header, payload[:-7], signature])
    other_audience = _reencode(user["token"], aud="demo-some-other-project")
    other_issuer = _reencode(user["token"], iss="https://securetoken.google.com/demo-some-other-project")
    no_subject = _reencode(user["token"], sub="")
    for bad in (corrupted, truncated, other_audience, other_issuer, no_subject):
        with pytest.raises(auth.InvalidIdTokenError):
            auth.verify_id_token(bad, app=app)


def test_emulator_mode_does_not_check_signatures_but_check_revoked_refuses_unknown_uids(app, user):
    """The emulator's tokens are unsigned, so a re-encoded `sub` passes verify_id_token alone."""
    from firebase_admin import auth

    forged = _reencode(user["token"], sub="someone-else", user_id="someone-else")
    assert auth.verify_id_token(forged, app=app)["uid"] == "someone-else"
    with pytest.raises(auth.UserNotFoundError):
        auth.verify_id_token(forged, app=app, check_revoked=True)


def test_an_expired_token_passes_firebase_admin_but_not_the_project_verifier(app, user):
    """firebase-admin skips exp/iat in emulator mode; core.adapters.firebase_auth checks them itself."""
    from firebase_admin import auth

    from core.adapters.firebase_auth import firebase_verifier
    from core.domain.errors import Unauthorized

    now = int(time.time())
    expired = _reencode(user["token"], iat=now - 7200, auth_time=now - 7200, exp=now - 3600)
    assert auth.verify_id_token(expired, app=app)["uid"] == user["uid"]  # emulator mode: no exp check

    verify = firebase_verifier(app)
    assert verify(user["token"]) == user["uid"]
    with pytest.raises(Unauthorized, match="expired"):
        verify(expired)


def test_without_the_emulator_host_an_emulator_token_is_refused(app, user, monkeypatch):
    """Production mode: an unsigned token has no "kid" and is refused before any key is fetched."""
    from firebase_admin import auth

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST")
    with pytest.raises(auth.InvalidIdTokenError, match="kid"):
        auth.verify_id_token(user["token"], app=app)


def test_clear_accounts_deletes_every_user(app, emulator, user):
    from firebase_admin import auth

    clear_accounts(emulator.address, PROJECT)
    with pytest.raises(AuthEmulatorError, match="EMAIL_NOT_FOUND|INVALID_LOGIN_CREDENTIALS"):
        sign_in(emulator.address, user["email"], "correct horse 1")
    with pytest.raises(auth.UserNotFoundError):
        auth.get_user(user["uid"], app=app)
    uid, _ = sign_up(emulator.address, user["email"], "correct horse 1")  # the email is free again
    assert uid != user["uid"]
