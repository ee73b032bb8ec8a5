"""Who gets into the support console: sign-in to a session, the check on every request, CSRF."""
from __future__ import annotations

import pytest

from core.domain.errors import Forbidden, Unauthorized
from core.domain.operators import Operator, Person, is_support
from core.services import support_access as access
from tests.unit.fake_support import FakeIdentity
from tests.unit.fakes import FIXED_NOW, make_deps

NOW = FIXED_NOW


@pytest.fixture
def identity():
    people = FakeIdentity()
    people.add("boss", "boss@example.com", claims={"admin": True})
    people.add("buyer", "buyer@example.com", email_verified=True)
    return people


def console(identity, **env):
    return make_deps(identity=identity, **env)


def signed_in(deps, identity, uid: str) -> str:
    return access.sign_in(deps, "Bearer " + identity.sign_in(uid, auth_time=NOW - 10)).cookie


@pytest.mark.parametrize("person, uids, emails, expected", [
    (Person("a", claims={"admin": True}), (), (), True),
    (Person("a", claims={"admin": "true"}), (), (), False),          # only the boolean claim
    (Person("a", claims={"role": "admin"}), (), (), False),
    (Person("a", claims={"admin": True}, disabled=True), (), (), False),
    (Person("a"), ("a",), (), True),
    (Person("a"), ("b",), (), False),
    (Person("a", "Ops@Example.com", email_verified=True), (), ("ops@example.com",), True),
    (Person("a", "ops@example.com", email_verified=False), (), ("ops@example.com",), False),  # anyone can sign up
    (Person("a", None, email_verified=True), (), ("",), False),
])
def test_who_is_support_staff(person, uids, emails, expected):
    assert is_support(person, uids, emails) is expected


def test_the_operator_is_named_by_email_in_the_ledger_and_by_both_in_the_log():
    operator = Operator("u1", "ops@example.com")
    assert operator.actor == "operator:ops@example.com"
    assert operator.log_fields() == {"operator": "ops@example.com", "operatorUid": "u1",
                                     "operatorEmail": "ops@example.com"}
    assert Operator("u1", None).actor == "operator:u1"


def test_an_admin_signs_in_and_every_request_finds_the_operator(identity):
    deps = console(identity)
    session = access.sign_in(deps, "Bearer " + identity.sign_in("boss", auth_time=NOW - 60))
    assert session.support is True and session.max_age == 3600 and session.person.uid == "boss"
    assert access.operator_for(deps, session.cookie) == Operator("boss", "boss@example.com")


def test_anyone_signs_in_but_only_support_staff_get_in(identity):
    deps = console(identity)
    session = access.sign_in(deps, "Bearer " + identity.sign_in("buyer", auth_time=NOW - 60))
    assert session.support is False
    with pytest.raises(Forbidden):
        access.operator_for(deps, session.cookie)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer a b", "Bearer nope"])
def test_sign_in_needs_a_valid_bearer_id_token(identity, header):
    with pytest.raises(Unauthorized):
        access.sign_in(console(identity), header)


def test_sign_in_needs_a_recent_sign_in(identity):
    deps = console(identity)
    stale = identity.sign_in("boss", auth_time=NOW - access.RECENT_SIGN_IN_SECONDS - 1)
    with pytest.raises(Unauthorized, match="last 5 minutes"):
        access.sign_in(deps, f"Bearer {stale}")
    assert identity.cookies == {}  # no session was minted
    identity.tokens["weird"] = {"uid": "boss", "auth_time": "yesterday"}
    with pytest.raises(Unauthorized):
        access.sign_in(deps, "Bearer weird")


@pytest.mark.parametrize("cookie", [None, "", "session-forged", "x" * 9000])
def test_no_or_a_bad_cookie_is_401(identity, cookie):
    with pytest.raises(Unauthorized):
        access.operator_for(console(identity), cookie)


def test_the_claim_is_read_again_on_every_request(identity):
    deps = console(identity)
    boss, buyer = signed_in(deps, identity, "boss"), signed_in(deps, identity, "buyer")
    identity.update("boss", claims={})          # access taken away: the next request is refused
    with pytest.raises(Forbidden):
        access.operator_for(deps, boss)
    identity.update("buyer", claims={"admin": True})  # granted: no new sign-in needed
    assert access.operator_for(deps, buyer).uid == "buyer"
    before = identity.calls
    access.operator_for(deps, buyer)
    assert identity.calls == before + 1  # one account read per request, no cache


def test_a_disabled_account_or_a_revoked_session_is_401(identity):
    deps = console(identity)
    cookie = signed_in(deps, identity, "boss")
    identity.revoke("boss")
    with pytest.raises(Unauthorized, match="revoked"):
        access.operator_for(deps, cookie)
    fresh = signed_in(deps, identity, "boss")
    assert access.operator_for(deps, fresh).uid == "boss"
    identity.update("boss", disabled=True)
    with pytest.raises(Unauthorized, match="disabled"):
        access.operator_for(deps, fresh)


def test_the_allow_lists_come_from_the_configuration(identity):
    identity.add("ops1", "Ops@Example.com", email_verified=True)
    identity.add("ops2", "second@example.com", email_verified=False)
    identity.add("ops3", "third@example.com")
    deps = console(identity, ADMIN_EMAILS=" ops@example.com , second@example.com", ADMIN_UIDS="ops3")
    assert deps.settings.admin_emails == ("ops@example.com", "second@example.com")
    assert access.operator_for(deps, signed_in(deps, identity, "ops1")).email == "Ops@Example.com"
    with pytest.raises(Forbidden):  # listed, but the email is not verified
        access.operator_for(deps, signed_in(deps, identity, "ops2"))
    assert access.operator_for(deps, signed_in(deps, identity, "ops3")).uid == "ops3"


def test_the_csrf_token_belongs_to_one_session(identity):
    deps = console(identity)
    one, two = signed_in(deps, identity, "boss"), signed_in(deps, identity, "boss")
    token = access.csrf_token(one)
    assert token == access.csrf_token(one) and token != access.csrf_token(two)
    assert len(token) == 43 and one not in token
    assert access.csrf_ok(one, token)
    for presented in (None, "", access.csrf_token(two), token[:-1], token + "A", 42):
        assert not access.csrf_ok(one, presented)
    assert not access.csrf_ok(None, token) and not access.csrf_ok("", token)


def test_session_length_is_configured_and_bounded(identity):
    from core.config import ConfigError

    deps = console(identity, ADMIN_SESSION_MINUTES="30")
    assert access.sign_in(deps, "Bearer " + identity.sign_in("boss", NOW)).max_age == 1800
    with pytest.raises(ConfigError):
        console(identity, ADMIN_SESSION_MINUTES="2")
    with pytest.raises(ConfigError):
        console(identity, ADMIN_SESSION_MINUTES=str(15 * 24 * 60))
