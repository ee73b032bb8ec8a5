"""Untrusted identifiers that become Firestore document ids.

A user id, checkout session id or event id arrives from outside. It is used to build a
document path only after it passes ``is_valid_doc_id``; anything else is rejected.
"""
from __future__ import annotations

import re

MAX_ID_BYTES = 128
_RESERVED = re.compile(r"^__.*__$")


def is_valid_doc_id(value: object) -> bool:
    if not isinstance(value, str) or not value or value.strip() != value:
        return False
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        return False
    if "/" in value or value in (".", "..") or _RESERVED.match(value):
        return False
    return all(ch.isprintable() for ch in value)
