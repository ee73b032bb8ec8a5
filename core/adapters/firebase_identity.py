"""The Identity port on Firebase Auth (firebase-admin): ID tokens, session cookies, accounts.

Session cookies are Firebase's own (``createSessionCookie``): signed by Google, verified with
Google's public keys, revocable with the account's refresh tokens. ``session_person`` verifies
the cookie and then reads the account once: disabled, or revoked (the cookie was issued before the
account's ``tokensValidAfter``) is 401 — the same check ``verify_session_cookie(check_revoked=True)``
makes, without a second read, since the console reads the account anyway for its current claims.
Against the Auth emulator (refused in production) firebase-admin accepts unsigned tokens and
skips their times; ``check_token_times`` checks them, so development refuses what production does.
"""
from __future__ import annotations

import datetime
import time
from typing import Any, Callable, Mapping

from core.adapters.firebase_auth import CLOCK_SKEW_SECONDS, check_token_times
from core.domain.errors import Unauthorized
from core.domain.operators import ADMIN_CLAIM, Person


def _person(user) -> Person:
    meta = user.user_metadata
    created = getattr(meta, "creation_timestamp", None)
    last = getattr(meta, "last_sign_in_timestamp", None)
    return Person(uid=user.uid, email=user.email, email_verified=bool(user.email_verified),
                  disabled=bool(user.disabled), claims=dict(user.custom_claims or {}),
                  created_at=created / 1000 if created else None, last_sign_in_at=last / 1000 if last else None)


class FirebaseIdentity:
    def __init__(self, app, clock: Callable[[], float] = time.time):
        self.app = app
        self.clock = clock

    def id_token_claims(self, id_token: str) -> Mapping[str, Any]:
        from firebase_admin import auth

        try:
            claims = auth.verify_id_token(id_token, app=self.app, check_revoked=True,
                                          clock_skew_seconds=CLOCK_SKEW_SECONDS)
        except auth.ExpiredIdTokenError:
            raise Unauthorized("token expired") from None
        except auth.RevokedIdTokenError:
            raise Unauthorized("token revoked") from None
        except auth.UserDisabledError:
            raise Unauthorized("account disabled") from None
        except auth.UserNotFoundError:
            raise Unauthorized("no such account") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from None
        check_token_times(claims, self.clock())
        return claims

    def create_session(self, id_token: str, seconds: int) -> str:
        from firebase_admin import auth

        try:
            return auth.create_session_cookie(id_token, expires_in=datetime.timedelta(seconds=seconds), app=self.app)
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from None

    def session_person(self, cookie: str) -> Person:
        from firebase_admin import auth

        try:
            claims = auth.verify_session_cookie(cookie, app=self.app, check_revoked=False,
                                                clock_skew_seconds=CLOCK_SKEW_SECONDS)
        except auth.ExpiredSessionCookieError:
            raise Unauthorized("session expired") from None
        except (auth.InvalidSessionCookieError, ValueError) as exc:
            raise Unauthorized(f"invalid session: {type(exc).__name__}") from None
        check_token_times(claims, self.clock())
        try:
            user = auth.get_user(claims["uid"], app=self.app)
        except auth.UserNotFoundError:
            raise Unauthorized("no such account") from None
        if user.disabled:
            raise Unauthorized("account disabled")
        if claims.get("iat", 0) * 1000 < (user.tokens_valid_after_timestamp or 0):
            raise Unauthorized("session revoked")
        return _person(user)

    def person(self, uid: str) -> Person | None:
        from firebase_admin import auth

        try:
            return _person(auth.get_user(uid, app=self.app))
        except (auth.UserNotFoundError, ValueError):  # ValueError: not a shape Firebase takes as a uid
            return None

    def person_by_email(self, email: str) -> Person | None:
        from firebase_admin import auth

        try:
            return _person(auth.get_user_by_email(email, app=self.app))
        except (auth.UserNotFoundError, ValueError):
            return None

    def set_admin_claim(self, uid: str, admin: bool) -> Person:
        from firebase_admin import auth

        claims = dict(auth.get_user(uid, app=self.app).custom_claims or {})
        claims.pop(ADMIN_CLAIM, None)
        if admin:
            claims[ADMIN_CLAIM] = True
        auth.set_custom_user_claims(uid, claims or None, app=self.app)
        return _person(auth.get_user(uid, app=self.app))
