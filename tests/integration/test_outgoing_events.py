"""Outgoing events on the real stack: every event type caused through the real services and Stripe
webhooks, fanned out and delivered by a real Celery worker (and beat) to real HTTP receivers that
verify every delivery with ``standardwebhooks.Webhook(secret).verify``.

The module runs its own worker and beat (queue of its own) with short delivery settings: retries
after 0.5 s doubling to 2 s, a 2 s HTTP timeout, the dead-letter window shortened from 3 days to
``WINDOW`` seconds, the outbox sweep every second. Endpoints are made with the operators' CLI.

What this file proves:
1. Every stored event type (tokens.credited/debited/refunded, purchase.failed, lot.expiring/expired,
   hold.created/captured/released/expired, account.frozen/unfrozen) and the derived balance.low
   and balance.depleted reach an endpoint subscribed to them, signed, in seq order per account;
   another endpoint gets only the types it asked for and the balance events its own threshold means.
2. The same event delivered twice (the receiver failed the first try; an operator's replay)
   carries the same webhook-id and the same body, and each copy verifies.
3. After a secret's rotation every delivery carries two signatures, each verifying with one secret.
4. An endpoint down for a while (connection refused) gets everything once it is back: in seq
   order, nothing lost; a slow endpoint and one that always fails never delay another.
5. An endpoint that always answers 500 has its delivery dead-lettered after the window; the
   CLI lists it and `tokenbank deliveries replay --endpoint` (its own process) delivers it.
6. An event committed with no kick after it (a process whose kick is not connected) is fanned
   out and delivered by beat's outbox sweep.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from admin.cli import parser, run
from broker.event_queue import CeleryEventQueue
from broker.producer import create_producer
from broker.task_names import JOB_EXPIRE
from core.bootstrap import bootstrap
from core.config import DEV_SERVICE_KEY, load_settings
from core.domain.outbox import event_id
from core.services import balance as balance_service
from devstack import stripe_events as events
from tests.integration.conftest import PROJECT, doc, docs, eventually, integration_env
from tests.integration.test_ledger_operations import charge_refunded, deliver, dispute_event, processed
from devstack.processes import _spawn
from tests.support.processes import ROOT, Service, free_port, start_worker
from tests.support.tokens import bearer

WINDOW = 8  # seconds before an undelivered message is dead-lettered (3 days in production)
SERVICE = {"X-Service-Key": DEV_SERVICE_KEY}
ALL_TYPES = ("tokens.credited,tokens.debited,tokens.refunded,purchase.failed,balance.low,balance.depleted,"
             "lot.expiring,lot.expired,hold.created,hold.captured,hold.released,hold.expired,account.frozen,"
             "account.unfrozen")


# --- a receiver: a small threaded HTTP server that verifies what it gets -------------------------

@dataclass
class Received:
    id: str
    timestamp: str
    signature: str
    body: str
    payload: dict
    verified_by: list[str]  # the receiver's secrets that verify this delivery
    status: int


class Receiver:
    """POSTs land here; each is verified with every secret the receiver holds (``secrets``) and
    answered per ``mode``: ok (200 if verified, else 401), fail (500), fail_first (500 the first
    time an id is seen, then 200), slow (sleeps ``delay`` first)."""

    def __init__(self, secrets=(), mode="ok"):
        self.port = free_port()
        self.secrets, self.mode, self.delay = list(secrets), mode, 0.0
        self.got: list[Received] = []
        self._lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/tokenbank"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                status = receiver.answer({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, headers: dict, body: str) -> int:
        verified = []
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        if self.mode == "slow":
            time.sleep(self.delay)
        with self._lock:
            seen = any(r.id == headers.get("webhook-id") for r in self.got)
            status = {"ok": 200 if verified else 401, "slow": 200, "fail": 500,
                      "fail_first": 200 if seen else 500}[self.mode]
            self.got.append(Received(headers.get("webhook-id", ""), headers.get("webhook-timestamp", ""),
                                     headers.get("webhook-signature", ""), body, json.loads(body), verified, status))
        return status

    def accepted(self, user_id: str | None = None) -> list[dict]:
        """What the app applied, in arrival order: each webhook-id once (delivery is at least once:
        a copy whose answer was lost to a timeout comes again, and the app drops it by its id)."""
        with self._lock:
            first: dict[str, Received] = {}
            for r in self.got:
                if r.status == 200:
                    assert first.setdefault(r.id, r).body == r.body, "a copy with another body"
            return [r.payload for r in first.values()
                    if user_id is None or r.payload["data"]["userId"] == user_id]

    def types(self, user_id: str) -> list[str]:
        return [p["type"] for p in self.accepted(user_id)]


# --- the module's stack ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ob_env(redis_host, firestore_emulator, stripe_sandbox):
    env = integration_env(redis_host, firestore_emulator.address, stripe_sandbox.address,
                          TASK_RETRY_BACKOFF_SECONDS="0.2", TASK_RETRY_BACKOFF_MAX_SECONDS="1",
                          OUTBOX_SWEEP_EVERY_SECONDS="1", WEBHOOK_TIMEOUT_SECONDS="2",
                          WEBHOOK_RETRY_BASE_SECONDS="0.5", WEBHOOK_RETRY_MAX_SECONDS="2",
                          WEBHOOK_RETRY_WINDOW_SECONDS=str(WINDOW))
    env["CELERY_QUEUE"] = f"tokenbank-outbox-{os.getpid()}"  # this module's worker only
    return env


@pytest.fixture(scope="module")
def ob_deps(ob_env):
    return bootstrap(load_settings(ob_env), configure_logs=False)


@pytest.fixture(scope="module")
def ob_worker(ob_env):
    service = start_worker(ob_env, concurrency=4, name="outbox-worker")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def ob_beat(ob_env, tmp_path_factory):
    schedule = tmp_path_factory.mktemp("beat") / "celerybeat-schedule"
    proc, log = _spawn("outbox-beat", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                                       "--loglevel=INFO", f"--schedule={schedule}"], env=ob_env)
    service = Service("outbox-beat", proc, "", log)
    try:
        eventually(lambda: b"beat: Starting" in log.read_bytes() or not service.alive(), 60, what="beat")
        assert service.alive(), service.log_tail()
        yield service
    finally:
        service.stop()


@pytest.fixture
def queue(ob_env):
    return CeleryEventQueue(create_producer(load_settings(ob_env)))


@pytest.fixture
def web(ob_deps, queue, ob_worker, ob_beat):
    from web.app import create_app

    return create_app(ob_deps, queue).test_client()  # its commits kick their fan-out on this queue


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw).start())
        return made[-1]
    yield make
    for r in made:
        r.stop()


def cli(deps, queue, *argv):
    out = io.StringIO()
    code = run(parser().parse_args(list(argv)), deps, queue, out)
    return code, json.loads(out.getvalue())


def add_endpoint(deps, queue, receiver: Receiver, types: str, *more) -> str:
    code, made = cli(deps, queue, "endpoints", "add", receiver.url, "--events", types, *more, "--operator", "qa")
    assert code == 0, made
    receiver.secrets.append(made["secret"])
    return made["id"]


def grant(web, uid, amount, key, **extra):
    resp = web.post("/api/tokens/grant", headers=SERVICE, json={
        "userId": uid, "amount": amount, "reason": "test", "idempotencyKey": key, "createAccount": True, **extra})
    assert resp.status_code == 200, resp.json
    return resp.json


def spend(web, uid, amount, key):
    resp = web.post("/api/tokens/spend", headers=bearer(uid, PROJECT),
                    json={"amount": amount, "reason": "work", "idempotencyKey": key})
    assert resp.status_code == 200, resp.json
    return resp.json


def hold(web, uid, amount, key, **extra):
    resp = web.post("/api/tokens/holds", headers=bearer(uid, PROJECT),
                    json={"amount": amount, "idempotencyKey": key, **extra})
    assert resp.status_code == 201, resp.json
    return resp.json["holdId"]


def post_hold(web, uid, hold_id, action, **body):
    resp = web.post(f"/api/tokens/holds/{hold_id}/{action}", headers=bearer(uid, PROJECT), json=body or None)
    assert resp.status_code == 200, resp.json
    return resp.json


def seqs_in_order(receiver: Receiver, uid: str) -> list[int]:
    return [p["data"]["seq"] for p in receiver.accepted(uid)]


# --- 1. every event type --------------------------------------------------------------------------

def test_every_event_type_reaches_its_subscribers_signed_and_in_seq_order(web, ob_deps, queue, receivers, secret):
    everything, balances = receivers(), receivers()
    add_endpoint(ob_deps, queue, everything, ALL_TYPES, "--low-threshold", "30")
    add_endpoint(ob_deps, queue, balances, "balance.low,balance.depleted", "--low-threshold", "45")
    a, b, c = "ev-life", "ev-promo", "ev-low"
    t0 = time.time()

    # B: a promo grant expiring in 20 s, announced by the expiry job (3 days' notice)
    grant(web, b, 5, "promo", source="promo", expiresAt=int(t0) + 20)
    producer = create_producer(ob_deps.settings)
    producer.send_task(JOB_EXPIRE)  # what beat sends every 30 s
    eventually(lambda: everything.types(b) == ["tokens.credited", "lot.expiring"], 30, what="lot.expiring")

    # A: a purchase (signed Stripe webhook), holds, a spend, a dispute opened and won, a refund, a rejected purchase
    session = events.checkout_session(a, "basic")
    processed(ob_deps, deliver(web, events.event(session), secret))
    expiring = hold(web, a, 10, "h-expire", ttlSeconds=10)
    captured = hold(web, a, 20, "h-capture")
    post_hold(web, a, captured, "capture", amount=15, idempotencyKey="c1")
    released = hold(web, a, 5, "h-release")
    post_hold(web, a, released, "release")
    spend(web, a, 5, "s1")
    processed(ob_deps, deliver(web, dispute_event(session, "charge.dispute.created", "needs_response", "dp_ev"),
                               secret))
    processed(ob_deps, deliver(web, dispute_event(session, "charge.dispute.closed", "won", "dp_ev"), secret))
    processed(ob_deps, deliver(web, charge_refunded(session, 750), secret))
    rejected = events.checkout_session(a, "starter", amount_total=1)
    deliver(web, events.event(rejected), secret)
    eventually(lambda: (doc(ob_deps, "purchases", rejected["id"]) or {}).get("status") == "rejected", 20,
               what="the rejected purchase")

    # C: crosses 30 going down (balance.low for the first endpoint), then reaches 0 (balance.depleted)
    grant(web, c, 40, "g")
    spend(web, c, 15, "s1")
    spend(web, c, 25, "s2")

    # the hold and the promo lot expire; the expiry job (as beat sends it) ends both
    time.sleep(max(0.0, t0 + 21 - time.time()))
    producer.send_task(JOB_EXPIRE)

    life = ["tokens.credited", "hold.created", "hold.created", "tokens.debited", "hold.captured", "hold.created",
            "hold.released", "tokens.debited", "account.frozen", "account.unfrozen", "tokens.refunded",
            "purchase.failed", "hold.expired"]
    eventually(lambda: everything.types(a) == life, 60, what=f"A's events (so far {everything.types(a)})")
    promo = ["tokens.credited", "lot.expiring", "lot.expired", "balance.depleted"]  # the expiry took B to 0
    eventually(lambda: everything.types(b) == promo, 30, what=f"B's events (so far {everything.types(b)})")
    eventually(lambda: everything.types(c) == ["tokens.credited", "tokens.debited", "balance.low", "tokens.debited",
                                               "balance.depleted"], 30, what=f"C's events ({everything.types(c)})")
    eventually(lambda: balances.types(c) == balances.types(b) == ["balance.depleted"], 30,
               what="the other endpoint's balance events")
    assert balances.types(a) == [] and everything.types(a) == life and everything.types(b) == promo  # nothing more

    # every delivery verified with the endpoint's secret; ids stable and unique; per account in seq order
    for receiver in (everything, balances):
        assert receiver.got and all(r.verified_by == receiver.secrets and r.status == 200 for r in receiver.got)
    assert seqs_in_order(everything, a) == list(range(1, 14))
    assert [p["id"] for p in everything.accepted(a)] == [event_id(a, s) for s in range(1, 14)]
    assert seqs_in_order(everything, c) == [1, 2, 2, 3, 3]  # a balance event right after its cause
    assert balances.accepted(c) == [p for p in everything.accepted(c) if p["type"] == "balance.depleted"]

    # what the payloads say
    by_type = {p["type"]: p for p in everything.accepted(a)}
    assert by_type["tokens.credited"]["data"]["amount"] == 200 and by_type["tokens.credited"]["data"]["userId"] == a
    capture = by_type["hold.captured"]["data"]
    assert (capture["holdId"], capture["amount"], capture["captured"], capture["released"]) == (captured, 20, 15, 5)
    assert by_type["tokens.refunded"]["data"]["amount"] == -100
    assert by_type["purchase.failed"]["data"]["paymentId"] == rejected["id"]
    assert by_type["purchase.failed"]["data"]["status"] == "rejected"
    assert by_type["account.frozen"]["data"]["disputeId"] == "dp_ev"
    assert by_type["hold.expired"]["data"]["holdId"] == expiring
    low = next(p for p in everything.accepted(c) if p["type"] == "balance.low")
    assert (low["data"]["threshold"], low["data"]["balance"], low["data"]["balanceBefore"]) == (30, 25, 40)
    notice = everything.accepted(b)[1]["data"]
    assert notice["expiresAt"] == int(t0) + 20 and notice["remaining"] == 5 and notice["source"] == "promo"
    assert all(p["timestamp"].endswith("Z") for p in everything.accepted())
    # the outbox is all dispatched, each account's cursor at its last seq
    assert not docs(ob_deps, "outbox", dispatched=False)
    assert doc(ob_deps, "outbox_cursors", a)["dispatchedSeq"] == doc(ob_deps, "users", a)["eventSeq"] == 13


# --- 2. and 3. the same id twice, and rotation ---------------------------------------------------

def test_the_same_event_delivered_twice_carries_the_same_id_and_body(web, ob_deps, queue, receivers):
    flaky = receivers(mode="fail_first")
    endpoint = add_endpoint(ob_deps, queue, flaky, "tokens.credited")
    grant(web, "twice", 7, "g")
    eventually(lambda: len(flaky.got) == 2, 30, what="a failed try and its retry")
    first, second = flaky.got
    assert (first.status, second.status) == (500, 200)
    assert first.id == second.id == event_id("twice", 1) and first.body == second.body
    assert first.verified_by == second.verified_by == flaky.secrets
    delivered = f"{endpoint}_{event_id('twice', 1)}"
    assert doc(ob_deps, "deliveries", delivered)["attempts"] == 2
    # an operator sends it again: the same id a third time
    assert cli(ob_deps, queue, "deliveries", "replay", delivered, "--operator", "qa")[1]["replayed"] == 1
    eventually(lambda: len(flaky.got) == 3, 30, what="the replayed copy")
    assert flaky.got[2].id == first.id and flaky.got[2].body == first.body and flaky.got[2].verified_by


def test_after_a_rotation_each_delivery_verifies_with_the_old_and_with_the_new_secret(web, ob_deps, queue,
                                                                                     receivers):
    app = receivers()
    endpoint = add_endpoint(ob_deps, queue, app, "tokens.credited,tokens.debited")
    old = app.secrets[0]
    grant(web, "rotor", 10, "g")
    eventually(lambda: len(app.accepted("rotor")) == 1, 30, what="the first event")
    assert len(app.got[0].signature.split(" ")) == 1
    code, rotated = cli(ob_deps, queue, "endpoints", "rotate-secret", endpoint, "--operator", "qa")
    assert code == 0 and rotated["secret"] != old
    new = rotated["secret"]
    app.secrets = [new]  # the app switches to the new secret at once; the old one would verify too
    spend(web, "rotor", 3, "s")
    eventually(lambda: len(app.accepted("rotor")) == 2, 30, what="the event after the rotation")
    after = app.got[-1]
    assert len(after.signature.split(" ")) == 2
    headers = {"webhook-id": after.id, "webhook-timestamp": after.timestamp, "webhook-signature": after.signature}
    for secret in (old, new):
        assert Webhook(secret).verify(after.body, headers)["type"] == "tokens.debited"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(after.body, headers)
    assert old not in json.dumps(cli(ob_deps, queue, "endpoints", "list")[1])  # listings never show a secret


# --- 4. down for a while, slow, failing: nothing lost, nobody held up ---------------------------

def test_an_endpoint_down_for_a_while_gets_everything_in_order_and_others_are_not_held_up(web, ob_deps, queue,
                                                                                         receivers):
    down, slow, fine = receivers(), receivers(mode="slow"), receivers()
    slow.delay = 3.0  # beyond the 2 s timeout: every try fails slowly
    for receiver in (down, slow, fine):
        add_endpoint(ob_deps, queue, receiver, "tokens.credited,tokens.debited")
    down.stop()  # connection refused from now on
    grant(web, "patient", 50, "g")
    for i in range(5):
        spend(web, "patient", 1, f"s{i}")
    eventually(lambda: seqs_in_order(fine, "patient") == [1, 2, 3, 4, 5, 6], 20, what="the healthy endpoint")
    assert down.got == [] and doc(ob_deps, "deliveries", f"{down_id(ob_deps, down)}_{event_id('patient', 1)}")[
        "attempts"] >= 1
    time.sleep(1.5)
    down.start()  # back on the same port
    eventually(lambda: seqs_in_order(down, "patient") == [1, 2, 3, 4, 5, 6], 30, what="the endpoint that came back")
    assert all(r.verified_by for r in down.got)
    assert not docs(ob_deps, "deliveries", endpointId=down_id(ob_deps, down), status="pending")
    assert doc(ob_deps, "webhook_endpoints", down_id(ob_deps, down))["retryAt"] is None


def down_id(deps, receiver: Receiver) -> str:
    return next(d["_id"] for d in docs(deps, "webhook_endpoints") if d["url"] == receiver.url)


# --- 5. dead letter, then the CLI's replay ---------------------------------------------------------

def test_an_endpoint_that_always_fails_is_dead_lettered_then_replayed_by_the_cli(web, ob_deps, queue, receivers,
                                                                               ob_env):
    broken = receivers(mode="fail")
    endpoint = add_endpoint(ob_deps, queue, broken, "tokens.credited")
    grant(web, "unlucky", 9, "g")
    delivery = f"{endpoint}_{event_id('unlucky', 1)}"
    eventually(lambda: (doc(ob_deps, "deliveries", delivery) or {}).get("status") == "dead_lettered", WINDOW + 20,
               what="the dead letter")
    tries = len(broken.got)
    assert tries >= 3 and {r.id for r in broken.got} == {event_id("unlucky", 1)}  # retried with backoff
    assert doc(ob_deps, "security_alerts", f"webhook_dead_letter_{delivery}")["type"] == "webhook_dead_letter"
    code, failed = cli(ob_deps, queue, "deliveries", "failed", "--endpoint", endpoint)
    assert code == 0 and [f["id"] for f in failed] == [delivery] and failed[0]["lastError"] == "HTTP 500"
    time.sleep(2)
    assert len(broken.got) == tries  # dead: no more tries
    broken.mode = "ok"
    replayed = subprocess.run([sys.executable, "-m", "admin.cli", "deliveries", "replay", "--endpoint", endpoint,
                               "--operator", "qa"], env=ob_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"replayed": 1, "deliveryIds": [delivery]}
    eventually(lambda: broken.accepted("unlucky"), 30, what="the replayed delivery")
    assert broken.got[-1].id == event_id("unlucky", 1) and broken.got[-1].verified_by
    assert doc(ob_deps, "deliveries", delivery)["status"] == "delivered"
    assert cli(ob_deps, queue, "deliveries", "failed")[1] == []


# --- 6. no kick: beat's sweep ----------------------------------------------------------------------

def test_an_event_committed_without_a_kick_is_delivered_by_the_beat_sweep(web, ob_deps, ob_env, queue, receivers):
    app = receivers()
    add_endpoint(ob_deps, queue, app, "tokens.credited")
    quiet = bootstrap(load_settings(ob_env), configure_logs=False)  # nothing connected to its kick
    balance_service.grant(quiet, "swept", 4, "no kick", "g", "service", create_account=True)
    assert docs(ob_deps, "outbox", userId="swept")[0]["dispatched"] is False
    eventually(lambda: app.types("swept") == ["tokens.credited"], 30, what="the sweep's delivery")
    assert all(d["dispatched"] for d in docs(ob_deps, "outbox", userId="swept"))
