"""The bearer-token guard and the token time checks (no sockets: a fake verifier)."""
from __future__ import annotations

import pytest

from core.adapters.firebase_auth import check_token_times
from core.domain.errors import Unauthorized
from core.services.auth import user_from_authorization


def verify(token: str) -> str:
    if token == "good":
        return "alice"
    if token == "bad-uid":
        return "a/b"
    raise Unauthorized("invalid token: InvalidIdTokenError")


@pytest.mark.parametrize("header,reason", [
    (None, "missing"), ("", "missing"), ("Basic abc", "malformed"), ("Bearer", "malformed"),
    ("Bearer ", "malformed"), ("Bearer a b", "malformed"), ("Bearer " + "x" * 9000, "too long"),
    ("Bearer nope", "invalid token"), ("Bearer bad-uid", "not a valid user id"),
])
def test_bad_authorization_headers_are_unauthorized_with_a_reason(header, reason):
    with pytest.raises(Unauthorized, match=reason):
        user_from_authorization(verify, header)


def test_a_good_token_names_its_user_and_the_scheme_is_case_insensitive():
    assert user_from_authorization(verify, "Bearer good") == "alice"
    assert user_from_authorization(verify, "bearer good") == "alice"


@pytest.mark.parametrize("claims,reason", [
    ({"exp": 990, "iat": 0}, "expired"),
    ({"iat": 0}, "expired"),
    ({"exp": "soon", "iat": 0}, "expired"),
    ({"exp": 5000, "iat": 1100}, "future"),
    ({"exp": 5000}, "future"),
])
def test_token_times_are_checked_even_where_firebase_admin_skips_them(claims, reason):
    with pytest.raises(Unauthorized, match=reason):
        check_token_times(claims, now=1000)


def test_fresh_token_times_pass_within_the_skew():
    check_token_times({"exp": 998, "iat": 1004}, now=1000)
