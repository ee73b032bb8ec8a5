"""The Firebase ID token verifier (built in core.bootstrap from firebase-admin).

It checks signature, expiry, audience and issuer; against the Auth emulator
(FIREBASE_AUTH_EMULATOR_HOST, refused in production) it accepts the emulator's unsigned
tokens, and then checks the times itself (``check_token_times``). Every failure is one
Unauthorized with a short reason, which the web tier answers with 401.
"""
from __future__ import annotations

import time
from typing import Callable

from core.domain.errors import Unauthorized

CLOCK_SKEW_SECONDS = 5


def check_token_times(claims: dict, now: float) -> None:
    """Expiry and issue time, checked on every token.

    firebase-admin checks them on Google-signed tokens but skips them entirely in emulator
    mode; checking here makes development refuse exactly what production refuses.
    """
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp < now - CLOCK_SKEW_SECONDS:
        raise Unauthorized("token expired")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool) or iat > now + CLOCK_SKEW_SECONDS:
        raise Unauthorized("token issued in the future")


def firebase_verifier(app, clock: Callable[[], float] = time.time) -> Callable[[str], str]:
    from firebase_admin import auth

    def verify(token: str) -> str:
        try:
            claims = auth.verify_id_token(token, app=app, clock_skew_seconds=CLOCK_SKEW_SECONDS)
        except auth.ExpiredIdTokenError:
            raise Unauthorized("token expired") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from None
        check_token_times(claims, clock())
        return claims.get("uid") or claims.get("sub")

    return verify
