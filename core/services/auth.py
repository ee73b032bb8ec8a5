"""Who is calling: a Firebase ID token in ``Authorization: Bearer``.

``user_from_authorization`` parses the header and asks the injected verifier (the adapter
core/adapters/firebase_auth.py, which also checks the token's times) for the user id.
Every failure is one Unauthorized with a short reason (401).
"""
from __future__ import annotations

from typing import Callable

from core.domain.errors import Unauthorized
from core.domain.ids import is_valid_doc_id

MAX_TOKEN_CHARS = 8192


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <Firebase ID token>`` header."""
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("malformed Authorization header; expected 'Bearer <Firebase ID token>'")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("token too long")
    return token


def user_from_authorization(verify: Callable[[str], str], header: str | None) -> str:
    uid = verify(bearer_token(header))
    if not is_valid_doc_id(uid):
        raise Unauthorized("token subject is not a valid user id")
    return uid
