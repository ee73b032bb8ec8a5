"""The holds API on the real stack: Flask app, Redis (lock, batch), the Firestore emulator and,
where Stripe events are involved, signed webhooks processed by the real Celery worker.

What this file proves, route by route (contract: POST/GET /api/tokens/holds, .../capture,
.../release, .../extend):
- every happy path and its answer's shape; a hold is in the ledger only once captured (one
  ``spend`` entry naming it), and it counts against ``available`` while open;
- every bad input has its status code (400, 401, 402, 404, 409, 410, 413, 423) and changes
  nothing: the users document, the ledger, the holds and lots collections are as before;
- idempotency: the same key and body replay the first answer (200); another body is 409;
- a hold ends once: a second capture with another key is 409, release twice is 200, an
  extension of a released or captured hold is 409, of an expired one 410;
- expiry, both ways: a real 10 s hold waited out (410 on capture, released by the worker's
  expiry job) and a moved clock (deps with a clock the test controls, same emulator);
- a dispute opened by a signed webhook freezes new holds (423) while a hold placed before
  the freeze can still be captured.
Every test ends with a clean ledger audit (core/services/audit.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
import time

import pytest

from broker.event_queue import CeleryEventQueue
from broker.task_names import JOB_EXPIRE
from core.config import DEV_SERVICE_KEY
from core.domain.ledger import keyed_entry_id
from core.services.audit import audit
from tests.integration.conftest import PROJECT, doc, docs, eventually
from tests.support.tokens import bearer, id_token

SERVICE = {"X-Service-Key": DEV_SERVICE_KEY}
HOLDS = "/api/tokens/holds"


# --- helpers ------------------------------------------------------------------------------------

class Clock:
    """A clock the test moves (starts at the real time; only ever moved forward)."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def auth(uid: str) -> dict:
    return bearer(uid, PROJECT)


def fund(client, uid: str, amount: int, key: str | None = None):
    resp = client.post("/api/tokens/grant", headers=SERVICE, json={
        "userId": uid, "amount": amount, "reason": "test funds", "idempotencyKey": key or f"fund-{time.time_ns()}",
        "createAccount": True})
    assert resp.status_code == 200, resp.json
    return resp


def place(client, uid: str, amount, key="h1", headers=None, **extra):
    body = {"amount": amount, "idempotencyKey": key, **extra}
    return client.post(HOLDS, headers=auth(uid) if headers is None else headers, json=body)


def capture(client, uid: str, hold_id: str, amount, key="c1", headers=None, **extra):
    return client.post(f"{HOLDS}/{hold_id}/capture", headers=auth(uid) if headers is None else headers,
                       json={"amount": amount, "idempotencyKey": key, **extra})


def release(client, uid: str, hold_id: str, headers=None, **kw):
    return client.post(f"{HOLDS}/{hold_id}/release", headers=auth(uid) if headers is None else headers, **kw)


def extend(client, uid: str, hold_id: str, ttl, headers=None):
    return client.post(f"{HOLDS}/{hold_id}/extend", headers=auth(uid) if headers is None else headers,
                       json={} if ttl is ... else {"ttlSeconds": ttl})


def listed(client, uid: str) -> list[str]:
    resp = client.get(HOLDS, headers=auth(uid))
    assert resp.status_code == 200, resp.json
    return [h["holdId"] for h in resp.json["holds"]]


def balance(client, uid: str) -> dict:
    resp = client.get("/api/tokens/balance", headers=auth(uid))
    assert resp.status_code == 200, resp.json
    return resp.json


def state(deps) -> dict:
    """Everything a refused request must leave as it was (documents without their ids' order)."""
    db = deps.store.db

    def collection(name):
        return sorted((s.id, json.dumps(s.to_dict(), sort_keys=True, default=str))
                      for s in db.collection(name).stream())

    return {name: collection(name) for name in ("users", "transactions", "holds", "lots")}


def ledger(deps, uid: str) -> list[dict]:
    return docs(deps, "transactions", userId=uid)


def clean_audit(deps) -> None:
    report = audit(deps)
    assert report.ok, [v.as_dict() for v in report.violations]


def hold_id_for(uid: str, key: str) -> str:
    return keyed_entry_id("hold", uid, key)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def clocked(deps, clock):
    return dataclasses.replace(deps, clock=clock)


@pytest.fixture
def client(clocked, celery_producer):
    """The web app over the real stack, its services reading the test's clock."""
    from web.app import create_app

    return create_app(clocked, CeleryEventQueue(celery_producer)).test_client()


# --- happy paths --------------------------------------------------------------------------------

def test_place_capture_release_extend_and_list_happy_paths(client, clocked, clock):
    fund(client, "happy", 500)
    now = clock()
    placed = place(client, "happy", 120, key="p1", reason="render job")
    assert placed.status_code == 201, placed.json
    body = placed.json
    assert body["holdId"] == hold_id_for("happy", "p1") and body["amount"] == 120
    assert body["expiresAt"] == math.ceil(now) + 900  # default ttl: 15 minutes
    assert body["available"] == 380 and body["replayed"] is False
    assert [e["type"] for e in ledger(clocked, "happy")] == ["grant"]  # a hold is not a ledger entry
    assert balance(client, "happy")["tokenBalance"] == 500
    assert (balance(client, "happy")["available"], balance(client, "happy")["held"]) == (380, 120)
    hold_doc = doc(clocked, "holds", body["holdId"])
    assert (hold_doc["userId"], hold_doc["status"], hold_doc["amount"], hold_doc["reason"]) == (
        "happy", "open", 120, "render job")
    assert doc(clocked, "users", "happy")["holds"][body["holdId"]]["amount"] == 120

    clock.advance(1)
    second = place(client, "happy", 80, key="p2", ttlSeconds=10)
    clock.advance(1)
    third = place(client, "happy", 50, key="p3", ttlSeconds=86_400)
    assert (second.status_code, third.status_code) == (201, 201)
    assert second.json["expiresAt"] == math.ceil(now + 1) + 10
    assert third.json["expiresAt"] == math.ceil(now + 2) + 86_400
    assert third.json["available"] == 250
    assert listed(client, "happy") == [body["holdId"], second.json["holdId"], third.json["holdId"]]
    entry = client.get(HOLDS, headers=auth("happy")).json["holds"][0]
    assert entry == {"holdId": body["holdId"], "amount": 120, "expiresAt": body["expiresAt"], "reason": "render job",
                     "createdAt": int(now)}

    captured = capture(client, "happy", body["holdId"], 70, key="cap1")
    assert captured.status_code == 200, captured.json
    assert captured.json == {"holdId": body["holdId"], "entryId": f"capture_{body['holdId']}", "captured": 70,
                             "released": 50, "balance": 430, "available": 300, "replayed": False}
    [spend] = [e for e in ledger(clocked, "happy") if e["type"] == "spend"]
    assert (spend["_id"], spend["amount"], spend["holdId"], spend["balanceAfter"]) == (
        captured.json["entryId"], -70, body["holdId"], 430)
    assert doc(clocked, "holds", body["holdId"])["status"] == "captured"

    released = release(client, "happy", second.json["holdId"])
    assert released.status_code == 200, released.json
    assert released.json == {"holdId": second.json["holdId"], "status": "released", "released": 80,
                             "available": 380}

    clock.advance(5)
    extended = extend(client, "happy", third.json["holdId"], 3600)
    assert extended.status_code == 200, extended.json
    assert extended.json == {"holdId": third.json["holdId"], "amount": 50, "expiresAt": math.ceil(clock()) + 3600}
    assert doc(clocked, "holds", third.json["holdId"])["expiresAt"] == extended.json["expiresAt"]
    assert doc(clocked, "users", "happy")["holds"][third.json["holdId"]]["expiresAt"] == extended.json["expiresAt"]
    assert listed(client, "happy") == [third.json["holdId"]]  # only the open one

    zero = place(client, "happy", 40, key="p4")
    nothing = capture(client, "happy", zero.json["holdId"], 0, key="cap0")
    assert nothing.status_code == 200 and nothing.json["entryId"] is None
    assert (nothing.json["captured"], nothing.json["released"], nothing.json["balance"]) == (0, 40, 430)
    assert len([e for e in ledger(clocked, "happy") if e["type"] == "spend"]) == 1  # capturing 0 posts nothing
    user = doc(clocked, "users", "happy")
    assert user["tokenBalance"] == 430 and user["totalTokensSpent"] == 70 and list(user["holds"]) == [
        third.json["holdId"]]
    clean_audit(clocked)


def test_a_trusted_backend_acts_for_a_user_with_user_id(client, clocked):
    fund(client, "gameuser", 100)
    placed = client.post(HOLDS, headers=SERVICE, json={"userId": "gameuser", "amount": 30, "idempotencyKey": "m1"})
    assert placed.status_code == 201 and placed.json["userId"] == "gameuser"
    hold_id = placed.json["holdId"]
    assert doc(clocked, "holds", hold_id)["actor"] == "service"
    got = client.get(f"{HOLDS}?userId=gameuser", headers=SERVICE)
    assert got.status_code == 200 and [h["holdId"] for h in got.json["holds"]] == [hold_id]
    ext = client.post(f"{HOLDS}/{hold_id}/extend", headers=SERVICE, json={"userId": "gameuser", "ttlSeconds": 60})
    assert ext.status_code == 200
    cap = client.post(f"{HOLDS}/{hold_id}/capture", headers=SERVICE,
                      json={"userId": "gameuser", "amount": 30, "idempotencyKey": "mc1"})
    assert cap.status_code == 200 and cap.json["balance"] == 70
    other = client.post(HOLDS, headers=SERVICE, json={"userId": "gameuser", "amount": 10, "idempotencyKey": "m2"})
    rel = client.post(f"{HOLDS}/{other.json['holdId']}/release?userId=gameuser", headers=SERVICE)  # no body
    assert rel.status_code == 200 and rel.json["status"] == "released"
    [spend] = [e for e in ledger(clocked, "gameuser") if e["type"] == "spend"]
    assert spend["actor"] == "service" and spend["holdId"] == hold_id
    clean_audit(clocked)


# --- idempotency --------------------------------------------------------------------------------

def test_the_same_key_and_body_replays_and_another_body_is_409(client, clocked, clock):
    fund(client, "replayer", 100)
    first = place(client, "replayer", 40, key="k", ttlSeconds=60, reason="job")
    assert first.status_code == 201
    clock.advance(3)
    place(client, "replayer", 10, key="other")  # the account moved on meanwhile
    before = state(clocked)
    again = place(client, "replayer", 40, key="k", ttlSeconds=60, reason="job")
    assert again.status_code == 200, again.json
    assert again.json == first.json | {"replayed": True}  # the first answer, the same expiresAt and available
    for changed in ({"amount": 41, "ttlSeconds": 60, "reason": "job"},
                    {"amount": 40, "ttlSeconds": 61, "reason": "job"},
                    {"amount": 40, "ttlSeconds": 60, "reason": "other job"}, {"amount": 40}):
        conflict = client.post(HOLDS, headers=auth("replayer"), json={"idempotencyKey": "k", **changed})
        assert conflict.status_code == 409, (changed, conflict.json)
        assert conflict.json["error"] == "idempotency_conflict"
    assert state(clocked) == before
    # a key is the user's own: another user may use the same key
    fund(client, "replayer2", 40)
    assert place(client, "replayer2", 40, key="k", ttlSeconds=60, reason="job").status_code == 201

    hold_id = first.json["holdId"]
    cap = capture(client, "replayer", hold_id, 25, key="cap")
    assert cap.status_code == 200
    before = state(clocked)
    replay = capture(client, "replayer", hold_id, 25, key="cap")
    assert replay.status_code == 200 and replay.json == cap.json | {"replayed": True}
    other_key = capture(client, "replayer", hold_id, 25, key="cap-2")
    other_amount = capture(client, "replayer", hold_id, 24, key="cap")
    assert (other_key.status_code, other_amount.status_code) == (409, 409)
    assert other_key.json["error"] == "hold_conflict"
    assert state(clocked) == before
    assert len([e for e in ledger(clocked, "replayer") if e["type"] == "spend"]) == 1
    clean_audit(clocked)


# --- bad input: 400 / 413 and nothing changes ----------------------------------------------------

BAD_PLACE_BODIES = [
    ({"amount": 0, "idempotencyKey": "k"}, "amount"),
    ({"amount": -1, "idempotencyKey": "k"}, "amount"),
    ({"amount": 100_001, "idempotencyKey": "k"}, "amount"),
    ({"amount": 1.5, "idempotencyKey": "k"}, "amount"),
    ({"amount": "10", "idempotencyKey": "k"}, "amount"),
    ({"amount": True, "idempotencyKey": "k"}, "amount"),
    ({"amount": None, "idempotencyKey": "k"}, "amount"),
    ({"idempotencyKey": "k"}, "amount"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": 9}, "ttlSeconds"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": 86_401}, "ttlSeconds"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": "x"}, "ttlSeconds"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": "60"}, "ttlSeconds"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": 60.5}, "ttlSeconds"),
    ({"amount": 10, "idempotencyKey": "k", "ttlSeconds": True}, "ttlSeconds"),
    ({"amount": 10}, "idempotencyKey"),
    ({"amount": 10, "idempotencyKey": ""}, "idempotencyKey"),
    ({"amount": 10, "idempotencyKey": "a/b"}, "idempotencyKey"),
    ({"amount": 10, "idempotencyKey": 7}, "idempotencyKey"),
    ({"amount": 10, "idempotencyKey": "k" * 129}, "idempotencyKey"),
    ({"amount": 10, "idempotencyKey": "k", "reason": ""}, "reason"),
    ({"amount": 10, "idempotencyKey": "k", "reason": "x" * 201}, "reason"),
    ({"amount": 10, "idempotencyKey": "k", "userId": "someone-else"}, "userId"),
    ({"amount": 10, "idempotencyKey": "k", "balance": 999}, None),
    ({"amount": 10, "idempotencyKey": "k", "expiresAt": 1}, None),
]


@pytest.mark.parametrize("body,field", BAD_PLACE_BODIES, ids=[json.dumps(b)[:60] for b, _ in BAD_PLACE_BODIES])
def test_bad_hold_requests_are_400_and_change_nothing(client, clocked, body, field):
    fund(client, "picky", 100)
    before = state(clocked)
    resp = client.post(HOLDS, headers=auth("picky"), json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == "invalid_request" and resp.json["message"]
    if field:
        assert resp.json["field"] == field
    assert state(clocked) == before


@pytest.mark.parametrize("data,content_type,status", [
    (None, None, 400),  # no body at all
    ("{not json", "application/json", 400),
    ("", "application/json", 400),
    ("[10]", "application/json", 400),
    ('"amount"', "application/json", 400),
    ("amount=10&idempotencyKey=k", "application/x-www-form-urlencoded", 400),
    (json.dumps({"amount": 10, "idempotencyKey": "k", "reason": "x" * 5000}), "application/json", 413),
])
def test_missing_invalid_or_oversized_json_is_refused_on_every_route(client, clocked, data, content_type, status):
    fund(client, "garbled", 100)
    open_hold = place(client, "garbled", 10, key="open").json["holdId"]
    before = state(clocked)
    for path in (HOLDS, f"{HOLDS}/{open_hold}/capture", f"{HOLDS}/{open_hold}/extend"):
        kwargs = {} if data is None else {"data": data, "content_type": content_type}
        resp = client.post(path, headers=auth("garbled"), **kwargs)
        assert resp.status_code == status, (path, resp.json)
    if data:  # release needs no body, but one it gets must be a JSON object
        resp = client.post(f"{HOLDS}/{open_hold}/release", headers=auth("garbled"), data=data,
                           content_type=content_type)
        assert resp.status_code == status, resp.json
    assert state(clocked) == before


def test_boundaries_are_accepted(client, clocked):
    fund(client, "edges", 100_000)
    assert place(client, "edges", 100_000, key="max", ttlSeconds=10).status_code == 201
    assert capture(client, "edges", hold_id_for("edges", "max"), 100_000, key="c").status_code == 200
    fund(client, "edges", 1)
    assert place(client, "edges", 1, key="min", ttlSeconds=86_400, reason="r" * 200).status_code == 201
    assert place(client, "edges", 0 + 1, key="k" * 128).status_code == 402  # a 128-character key is a key
    clean_audit(clocked)


@pytest.mark.parametrize("body,field", [
    ({"amount": -1, "idempotencyKey": "c"}, "amount"),
    ({"amount": 1.5, "idempotencyKey": "c"}, "amount"),
    ({"amount": "5", "idempotencyKey": "c"}, "amount"),
    ({"amount": True, "idempotencyKey": "c"}, "amount"),
    ({"amount": None, "idempotencyKey": "c"}, "amount"),
    ({"idempotencyKey": "c"}, "amount"),
    ({"amount": 100_001, "idempotencyKey": "c"}, "amount"),
    ({"amount": 51, "idempotencyKey": "c"}, "amount"),  # over the held amount
    ({"amount": 5}, "idempotencyKey"),
    ({"amount": 5, "idempotencyKey": "a/b"}, "idempotencyKey"),
    ({"amount": 5, "idempotencyKey": "c", "reason": "x"}, None),
    ({"amount": 5, "idempotencyKey": "c", "userId": "someone-else"}, "userId"),
])
def test_bad_captures_are_400_and_change_nothing(client, clocked, body, field):
    fund(client, "capper", 100)
    hold_id = place(client, "capper", 50, key="h").json["holdId"]
    before = state(clocked)
    resp = client.post(f"{HOLDS}/{hold_id}/capture", headers=auth("capper"), json=body)
    assert resp.status_code == 400, resp.json
    if field:
        assert resp.json["field"] == field
    assert state(clocked) == before
    assert capture(client, "capper", hold_id, 50, key="good").status_code == 200  # the hold is still whole


@pytest.mark.parametrize("body,status", [
    ({}, 400), ({"ttlSeconds": 9}, 400), ({"ttlSeconds": 86_401}, 400), ({"ttlSeconds": "x"}, 400),
    ({"ttlSeconds": None}, 400), ({"ttlSeconds": 60, "amount": 5}, 400), ({"ttlSeconds": 60, "userId": "x"}, 400),
])
def test_bad_extensions_are_400_and_change_nothing(client, clocked, body, status):
    fund(client, "extender", 100)
    hold_id = place(client, "extender", 50, key="h").json["holdId"]
    before = state(clocked)
    resp = client.post(f"{HOLDS}/{hold_id}/extend", headers=auth("extender"), json=body)
    assert resp.status_code == status, resp.json
    assert state(clocked) == before


def test_bad_release_bodies_are_400_and_change_nothing(client, clocked):
    fund(client, "releaser", 100)
    hold_id = place(client, "releaser", 50, key="h").json["holdId"]
    before = state(clocked)
    for body in ({"force": True}, {"userId": "someone-else"}, [1]):
        resp = client.post(f"{HOLDS}/{hold_id}/release", headers=auth("releaser"), json=body)
        assert resp.status_code == 400, (body, resp.json)
    assert state(clocked) == before
    assert release(client, "releaser", hold_id, json={}).status_code == 200  # an empty object is fine


# --- 402 / 404 / 401 ------------------------------------------------------------------------------

def test_a_hold_beyond_what_is_available_is_402_with_the_available_figure(client, clocked):
    assert place(client, "newcomer", 1).status_code == 402  # no account at all
    assert place(client, "newcomer", 1).json["available"] == 0
    fund(client, "short", 100)
    assert place(client, "short", 60, key="a").status_code == 201
    before = state(clocked)
    refused = place(client, "short", 41, key="b")
    assert refused.status_code == 402, refused.json
    assert (refused.json["error"], refused.json["available"], refused.json["balance"], refused.json["needed"]) == (
        "insufficient_funds", 40, 100, 41)
    spend = client.post("/api/tokens/spend", headers=auth("short"),
                        json={"amount": 41, "reason": "sword", "idempotencyKey": "s1"})
    assert spend.status_code == 402 and spend.json["available"] == 40  # spends respect holds too
    assert state(clocked) == before
    assert place(client, "short", 40, key="b").status_code == 201  # the same key after a refusal: a fresh try
    clean_audit(clocked)


@pytest.mark.parametrize("hold_id", [
    "hold_" + "0" * 40,  # well formed, does not exist
    "nothold", "hold_", "hold_" + "x" * 200, "__hold__", "hold_x%20", "capture_hold_x", "..",
])
def test_a_hold_that_does_not_exist_or_is_malformed_is_404_on_every_route(client, clocked, hold_id):
    fund(client, "seeker", 100)
    before = state(clocked)
    for resp in (capture(client, "seeker", hold_id, 1), release(client, "seeker", hold_id),
                 extend(client, "seeker", hold_id, 60)):
        assert resp.status_code == 404, resp.data
    assert state(clocked) == before


def test_another_users_hold_is_404_and_stays_untouched(client, clocked):
    fund(client, "owner", 100)
    fund(client, "intruder", 100)
    hold_id = place(client, "owner", 50, key="h").json["holdId"]
    before = state(clocked)
    for headers in (auth("intruder"), None):
        for resp in (capture(client, "intruder", hold_id, 10, headers=headers),
                     release(client, "intruder", hold_id, headers=headers),
                     extend(client, "intruder", hold_id, 600, headers=headers)):
            assert resp.status_code == 404 and resp.json["error"] == "not_found", resp.json
            assert "amount" not in resp.json
    as_service = client.post(f"{HOLDS}/{hold_id}/capture", headers=SERVICE,
                             json={"userId": "intruder", "amount": 10, "idempotencyKey": "x"})
    assert as_service.status_code == 404
    assert client.post(f"{HOLDS}/{hold_id}/release?userId=intruder", headers=SERVICE).status_code == 404
    assert listed(client, "intruder") == []
    assert state(clocked) == before
    assert capture(client, "owner", hold_id, 50).status_code == 200


def test_unauthenticated_calls_are_401_and_a_service_needs_a_user_id(client, clocked):
    fund(client, "authd", 100)
    hold_id = place(client, "authd", 10).json["holdId"]
    before = state(clocked)
    routes = [("post", HOLDS, {"amount": 1, "idempotencyKey": "k"}), ("get", HOLDS, None),
              ("post", f"{HOLDS}/{hold_id}/capture", {"amount": 1, "idempotencyKey": "k"}),
              ("post", f"{HOLDS}/{hold_id}/release", None), ("post", f"{HOLDS}/{hold_id}/extend", {"ttlSeconds": 60})]
    bad = [{}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"},
           {"Authorization": f"Bearer {id_token('authd', PROJECT, issued=int(time.time()) - 7200)}"},
           {"X-Service-Key": "wrong"}]
    for method, path, body in routes:
        for headers in bad:
            resp = getattr(client, method)(path, headers=headers, **({"json": body} if body is not None else {}))
            assert resp.status_code == 401 and resp.json["error"] == "unauthorized", (method, path, headers, resp.json)
        no_user = getattr(client, method)(path, headers=SERVICE, **({"json": body} if body is not None else {}))
        assert no_user.status_code == 400 and no_user.json["field"] == "userId", (method, path, no_user.json)
        bad_user = getattr(client, method)(
            path + ("?userId=a%2Fb" if body is None else ""), headers=SERVICE,
            **({"json": {**body, "userId": "a/b"}} if body is not None else {}))
        assert bad_user.status_code == 400, (method, path, bad_user.json)
    assert state(clocked) == before


# --- a hold ends once -----------------------------------------------------------------------------

def test_release_twice_is_200_and_a_released_hold_cannot_be_captured_or_extended(client, clocked):
    fund(client, "twice", 100)
    hold_id = place(client, "twice", 30).json["holdId"]
    first = release(client, "twice", hold_id)
    assert first.status_code == 200 and first.json["status"] == "released" and first.json["available"] == 100
    before = state(clocked)
    second = release(client, "twice", hold_id)
    assert second.status_code == 200 and second.json == first.json
    ext = extend(client, "twice", hold_id, 600)
    assert ext.status_code == 409 and ext.json["error"] == "hold_conflict"
    cap = capture(client, "twice", hold_id, 10)
    assert cap.status_code == 409
    assert state(clocked) == before
    assert [e["type"] for e in ledger(clocked, "twice")] == ["grant"]
    clean_audit(clocked)


def test_a_captured_hold_cannot_be_released_extended_or_captured_again(client, clocked):
    fund(client, "done", 100)
    hold_id = place(client, "done", 30).json["holdId"]
    assert capture(client, "done", hold_id, 30, key="c1").status_code == 200
    before = state(clocked)
    assert release(client, "done", hold_id).status_code == 409
    assert extend(client, "done", hold_id, 600).status_code == 409
    assert capture(client, "done", hold_id, 30, key="c2").status_code == 409
    assert capture(client, "done", hold_id, 0, key="c3").status_code == 409
    assert state(clocked) == before
    clean_audit(clocked)


# --- expiry -----------------------------------------------------------------------------------------

def test_capture_after_expiry_is_410_with_a_moved_clock_and_the_expiry_job_releases_it(client, clocked, clock):
    from core.services import expiry

    fund(client, "late", 100)
    hold_id = place(client, "late", 70, ttlSeconds=10).json["holdId"]
    expires_at = doc(clocked, "holds", hold_id)["expiresAt"]
    clock.advance(expires_at - clock() - 0.5)
    assert listed(client, "late") == [hold_id] and balance(client, "late")["available"] == 30
    clock.advance(0.5)  # exactly at expiresAt: expired
    before = state(clocked)
    resp = capture(client, "late", hold_id, 10)
    assert resp.status_code == 410 and resp.json["error"] == "hold_expired", resp.json
    assert extend(client, "late", hold_id, 600).status_code == 410
    assert state(clocked) == before  # found expired: nothing written by the refusal
    assert listed(client, "late") == [] and balance(client, "late")["available"] == 100
    assert expiry.run(clocked)["holdsReleased"] == 1
    assert doc(clocked, "holds", hold_id)["status"] == "expired" and doc(clocked, "users", "late")["holds"] == {}
    assert expiry.run(clocked)["holdsReleased"] == 0
    assert capture(client, "late", hold_id, 10).status_code == 410
    again = release(client, "late", hold_id)
    assert again.status_code == 200 and again.json["status"] == "expired"
    assert [e["type"] for e in ledger(clocked, "late")] == ["grant"]
    assert place(client, "late", 100, key="after").status_code == 201
    clean_audit(clocked)


def test_a_real_10_second_hold_expires_410_and_the_worker_expiry_job_releases_it(
        web_client, deps, worker, celery_producer):
    fund(web_client, "waiter", 100)
    placed = web_client.post(HOLDS, headers=auth("waiter"), json={"amount": 60, "idempotencyKey": "w",
                                                                 "ttlSeconds": 10})
    assert placed.status_code == 201
    hold_id, expires_at = placed.json["holdId"], placed.json["expiresAt"]
    assert 9 <= expires_at - time.time() <= 11
    ok = web_client.post(f"{HOLDS}/{hold_id}/extend", headers=auth("waiter"), json={"ttlSeconds": 10})
    assert ok.status_code == 200 and ok.json["expiresAt"] >= expires_at
    expires_at = ok.json["expiresAt"]
    time.sleep(max(0.0, expires_at - time.time()) + 0.2)
    gone = web_client.post(f"{HOLDS}/{hold_id}/capture", headers=auth("waiter"),
                           json={"amount": 60, "idempotencyKey": "c"})
    assert gone.status_code == 410, gone.json
    assert web_client.get(HOLDS, headers=auth("waiter")).json["holds"] == []
    assert doc(deps, "holds", hold_id)["status"] == "open"  # not yet released: that is the job's
    celery_producer.send_task(JOB_EXPIRE)  # what beat sends every 30 s
    eventually(lambda: doc(deps, "holds", hold_id)["status"] == "expired", timeout=30,
               what="the worker's expiry job to release the hold")
    hold_doc = doc(deps, "holds", hold_id)
    assert hold_doc["released"] == 60 and hold_doc["history"][-1]["action"] == "expired"
    assert doc(deps, "users", "waiter")["holds"] == {} and doc(deps, "users", "waiter")["tokenBalance"] == 100
    assert [e["type"] for e in ledger(deps, "waiter")] == ["grant"]
    clean_audit(deps)


def test_beat_runs_the_expiry_job_often_enough_to_release_within_60_seconds(settings):
    from worker.celery_app import create_celery

    entry = create_celery(settings).conf.beat_schedule["expire-holds-and-lots"]
    assert entry["task"] == JOB_EXPIRE and entry["schedule"] <= 30


# --- frozen account ---------------------------------------------------------------------------------

def test_a_dispute_freezes_new_holds_423_but_a_hold_placed_before_can_be_captured(
        client, clocked, worker, secret, web_client):
    from tests.integration.test_ledger_operations import buy, deliver, dispute_event, processed

    session = buy(web_client, clocked, secret, "frozen", "basic")  # 200 tokens via the real worker
    before_freeze = place(client, "frozen", 80, key="before").json["holdId"]
    spare = place(client, "frozen", 20, key="spare").json["holdId"]
    processed(clocked, deliver(web_client, dispute_event(session, "charge.dispute.created", "needs_response", "dp_h1"),
                               secret))
    assert doc(clocked, "users", "frozen")["frozenBy"]
    before = state(clocked)
    refused = place(client, "frozen", 10, key="during")
    assert refused.status_code == 423 and refused.json["error"] == "account_frozen", refused.json
    service_try = client.post(HOLDS, headers=SERVICE, json={"userId": "frozen", "amount": 10, "idempotencyKey": "s"})
    assert service_try.status_code == 423
    assert state(clocked) == before
    replay = place(client, "frozen", 80, key="before")  # the first answer, frozen or not
    assert replay.status_code == 200 and replay.json["holdId"] == before_freeze
    captured = capture(client, "frozen", before_freeze, 50, key="cap")
    assert captured.status_code == 200, captured.json
    assert (captured.json["captured"], captured.json["released"], captured.json["balance"]) == (50, 30, 150)
    assert release(client, "frozen", spare).status_code == 200
    processed(clocked, deliver(web_client, dispute_event(session, "charge.dispute.closed", "won", "dp_h1"), secret))
    assert place(client, "frozen", 10, key="after").status_code == 201
    clean_audit(clocked)
