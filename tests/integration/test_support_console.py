"""The support console's adapters on the real emulators: Firebase session cookies on the Auth
emulator (minted, verified, a claim read again, revoked, disabled), and every Firestore read and
ops_log write the console makes (the user's records, the last 24 hours) on the Firestore emulator,
driven through the real services: the inbox, a dead letter, holds, the four actions.
"""
from __future__ import annotations

import dataclasses
import os
import time
import uuid

import pytest

from core.domain.errors import Forbidden, Unauthorized
from core.domain.operators import Operator
from core.services import balance, dashboard, holds, operations, support, support_access, support_actions
from core.services.dead_letters import dead_letter_event
from core.services.ingress import receive
from devstack import auth_emulator
from devstack.auth_emulator import sign_in, sign_up, start_auth_emulator
from tests.integration.conftest import PROJECT, doc, docs
from tests.unit.fakes import FakeQueue, checkout_session, event_json, sign

try:
    auth_emulator.ensure_installed()
    _MISSING = None
except RuntimeError as exc:  # pragma: no cover - depends on the machine
    _MISSING = str(exc)


@pytest.fixture(scope="module")
def auth():
    if _MISSING:
        pytest.skip(_MISSING)
    service = start_auth_emulator(project=PROJECT)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def deps(deps, auth):
    """The session's deps with a firebase app of this module's own, bound to this module's Auth
    emulator: firebase-admin makes one auth client per app and reads FIREBASE_AUTH_EMULATOR_HOST
    when it makes it, so the variable is set only while this app's client is made, and the
    session's app (the rest of the suite's) is never touched."""
    import firebase_admin
    from firebase_admin import auth as firebase_auth_module

    from core.adapters.firebase_identity import FirebaseIdentity
    from core.bootstrap import _emulator_credential

    name = f"support-console-{auth.address}"
    try:
        app = firebase_admin.get_app(name)
    except ValueError:
        before = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = auth.address
        try:
            app = firebase_admin.initialize_app(_emulator_credential(), {"projectId": PROJECT}, name=name)
            firebase_auth_module._get_client(app)  # made now, with this emulator
        finally:
            if before is None:
                os.environ.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
            else:
                os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = before
    return dataclasses.replace(deps, identity=FirebaseIdentity(app))


def admin_app(deps):
    return deps.identity.app


def new_account(auth) -> tuple[str, str, str]:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    uid, token = sign_up(auth.address, email, "correct-horse-battery")
    return uid, email, token


def test_a_session_cookie_from_the_auth_emulator_and_the_check_on_every_request(deps, auth):
    from firebase_admin import auth as firebase_auth

    uid, email, token = new_account(auth)
    session = support_access.sign_in(deps, f"Bearer {token}")
    assert session.support is False and session.person.email == email and session.max_age == 3600
    assert session.cookie.count(".") == 2 and session.cookie != token
    with pytest.raises(Forbidden):
        support_access.operator_for(deps, session.cookie)
    firebase_auth.set_custom_user_claims(uid, {"tier": "gold"}, app=admin_app(deps))
    granted = operations.support_access(deps, email, True, "integration test")  # `tokenbank support grant`
    assert granted == {"uid": uid, "email": email, "admin": True}
    assert firebase_auth.get_user(uid, app=admin_app(deps)).custom_claims == {"tier": "gold", "admin": True}
    assert support_access.operator_for(deps, session.cookie) == Operator(uid, email)  # no new sign-in needed
    assert support_access.find_user(deps, email.upper()) == uid and support_access.find_user(deps, uid) == uid

    for forged in ("x.y.z", token, session.cookie[:-4]):  # an ID token is not a session cookie
        with pytest.raises(Unauthorized):
            support_access.operator_for(deps, forged)

    time.sleep(1.1)  # revocation is to the second: a cookie issued in an earlier second is revoked
    firebase_auth.revoke_refresh_tokens(uid, app=admin_app(deps))
    with pytest.raises(Unauthorized, match="revoked"):
        support_access.operator_for(deps, session.cookie)
    _, fresh_token = sign_in(auth.address, email, "correct-horse-battery")
    fresh = support_access.sign_in(deps, f"Bearer {fresh_token}").cookie
    assert support_access.operator_for(deps, fresh).uid == uid
    firebase_auth.update_user(uid, disabled=True, app=admin_app(deps))
    with pytest.raises(Unauthorized, match="disabled"):
        support_access.operator_for(deps, fresh)


def test_a_stale_sign_in_opens_no_session(deps, auth):
    _, _, token = new_account(auth)
    later = dataclasses.replace(deps, clock=lambda: time.time() + 400)
    with pytest.raises(Unauthorized, match="last 5 minutes"):
        support_access.sign_in(later, f"Bearer {token}")


def deliver(deps, obj, event_id: str, event_type: str = "checkout.session.completed") -> str:
    body = event_json(obj, event_type, event_id=event_id)
    receive(deps, FakeQueue(), body.encode(), sign(body, deps.settings.stripe_webhook_secrets[0]))
    return body


def test_the_users_records_and_the_four_actions_on_firestore(deps, auth):
    from core.handlers.registry import process_stripe_event

    uid, email, token = new_account(auth)
    operator = Operator("ops-uid", "ops@example.com")
    process_stripe_event(deps, deliver(deps, checkout_session(uid, "basic", session_id=f"cs_{uid}"), f"evt_{uid}"))
    body = deliver(deps, checkout_session(uid, "pro", session_id=f"cs_stuck_{uid}"), f"evt_stuck_{uid}")
    dead_letter_event(deps, f"evt_stuck_{uid}", "checkout.session.completed", body, RuntimeError("gave up"), 9,
                      sign(body, deps.settings.stripe_webhook_secrets[0]))
    hold = holds.place(deps, uid, 30, "job-1", reason="render")
    balance.spend(deps, uid, 20, "image", "spend-1", f"user:{uid}")

    view = support.user_view(deps, uid)
    assert view["account"]["email"] == email
    assert (view["balance"]["tokenBalance"], view["balance"]["available"], view["balance"]["held"]) == (180, 150, 30)
    assert [(p["id"], p["status"]) for p in view["purchases"]] == [(f"cs_{uid}", "fulfilled")]
    assert {e["id"]: e["status"] for e in view["events"]} == {f"evt_{uid}": "processed",
                                                              f"evt_stuck_{uid}": "dead_lettered"}
    assert all("payload" not in e and "signature" not in e for e in view["events"])
    assert [a["id"] for a in view["alerts"]] == [f"dead_letter_evt_stuck_{uid}"]
    assert [e["type"] for e in view["ledger"]["entries"]] == ["spend", "purchase"]
    assert view["holds"][0]["id"] == hold["holdId"] and view["lots"][0]["remaining"] == 180

    queue = FakeQueue()
    for action, form in (("adjust", {"amount": "-50", "reason": "goodwill reversed"}),
                         ("release_hold", {"holdId": hold["holdId"], "reason": "job died"}),
                         ("replay_event", {"eventId": f"evt_stuck_{uid}", "reason": "bug fixed"}),
                         ("reset_limits", {"reason": "verified"})):
        key = support_actions.review(deps, action, uid, form)["key"]
        done = support_actions.perform(deps, queue, operator, action, uid, {**form, "key": key})
        log = doc(deps, "ops_log", done["opsLogId"])
        assert (log["status"], log["operatorEmail"], log["reason"]) == ("done", "ops@example.com", form["reason"])
        assert log["createdAt"] and log["finishedAt"] and log["action"] == action
    assert doc(deps, "users", uid)["tokenBalance"] == 130
    [adjustment] = docs(deps, "transactions", userId=uid, type="adjustment")
    assert (adjustment["amount"], adjustment["actor"]) == (-50, "operator:ops@example.com")
    assert doc(deps, "holds", hold["holdId"])["status"] == "released"
    assert doc(deps, "stripe_events", f"evt_stuck_{uid}")["status"] == "received"
    assert [e[0] for e in queue.events] == [f"evt_stuck_{uid}"]
    history = support.user_view(deps, uid)["opsLog"]
    assert [o["action"] for o in history] == ["reset_limits", "replay_event", "release_hold", "adjust"]


def test_the_dashboard_reads_the_last_24_hours(deps, auth):
    from core.handlers.registry import process_stripe_event

    uid, _, _ = new_account(auth)
    before = {s["key"]: s["total"] for s in dashboard.last_24_hours(deps)["series"]}
    process_stripe_event(deps, deliver(deps, checkout_session(uid, "starter", session_id=f"cs_d_{uid}"),
                                       f"evt_d_{uid}"))
    pi = doc(deps, "purchases", f"cs_d_{uid}")["paymentIntentId"]
    dispute = {"id": f"dp_{uid}", "object": "dispute", "charge": "ch_x", "payment_intent": pi, "amount": 499,
               "reason": "fraudulent", "status": "needs_response", "created": int(time.time())}
    process_stripe_event(deps, deliver(deps, dispute, f"evt_dp_{uid}", "charge.dispute.created"))
    assert doc(deps, "security_alerts", f"dispute_{dispute['id']}")["createdAt"]  # written in the transaction
    board = dashboard.last_24_hours(deps)
    after = {s["key"]: s["total"] for s in board["series"]}
    assert after["webhooks"] == before["webhooks"] + 2
    assert after["credits"] == before["credits"] + 1
    assert after["alerts"] == before["alerts"] + 1
    assert board["series"][0]["counts"][-1] >= 2  # this hour is the last one
