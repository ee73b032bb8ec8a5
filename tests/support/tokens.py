"""Firebase ID tokens in the Auth emulator's format (unsigned, alg none).

firebase-admin accepts these only while FIREBASE_AUTH_EMULATOR_HOST is set, which
production configuration refuses. They still carry the claims it checks: issuer,
audience (the project), subject, issue and expiry times.
"""
from __future__ import annotations

import base64
import json
import time


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def id_token(uid: str, project: str, *, issued: int | None = None, lifetime: int = 3600, **claims) -> str:
    now = int(time.time()) if issued is None else issued
    payload = {"iss": f"https://securetoken.google.com/{project}", "aud": project, "auth_time": now,
               "user_id": uid, "sub": uid, "iat": now, "exp": now + lifetime,
               "firebase": {"identities": {}, "sign_in_provider": "password"}, **claims}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def bearer(uid: str, project: str, **kw) -> dict:
    return {"Authorization": f"Bearer {id_token(uid, project, **kw)}"}
