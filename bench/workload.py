"""Stripe events, Celery staging and Firestore checks for the benchmark.

Events are Stripe's example objects (devstack/stripe_events.py) with bench ids, built from one
JSON template per package and signed with the SDK's generate_signature_header.
"""
from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass

from broker import task_names
from core.domain.payment import FULFILLED
from devstack import stripe_events as events

STAGING = "bench.staging"
UNACKED = "unacked"  # kombu's Redis transport: delivered, not yet acknowledged
_PH = {"event": "BENCHPHEVT", "session": "BENCHPHSESSION", "user": "BENCHPHUSER", "pi": "BENCHPHPI"}


@dataclass(frozen=True)
class Purchase:
    event_id: str
    session_id: str
    user_id: str
    package: str
    tokens: int
    body: bytes


class EventFactory:
    def __init__(self, secret: str, tag: str):
        self.secret = secret
        self.tag = tag
        self.templates = {}
        for package in events.PACKAGES:
            obj = events.checkout_session(_PH["user"], package, session_id=_PH["session"], payment_intent=_PH["pi"])
            text = json.dumps(events.event(obj, event_id=_PH["event"]))
            for value in _PH.values():
                assert text.count(value) >= 1
            self.templates[package] = text
        self.packages = list(events.PACKAGES)

    def purchase(self, prefix: str, i: int, user_id: str, package: str | None = None) -> Purchase:
        package = package or self.packages[i % len(self.packages)]
        event_id = f"evt_bench_{self.tag}_{prefix}_{i}"
        session_id = f"cs_bench_{self.tag}_{prefix}_{i}"
        text = (self.templates[package].replace(_PH["event"], event_id).replace(_PH["session"], session_id)
                .replace(_PH["user"], user_id).replace(_PH["pi"], f"pi_bench_{self.tag}_{prefix}_{i}"))
        return Purchase(event_id, session_id, user_id, package, events.PACKAGES[package][0], text.encode())

    def many_users(self, prefix: str, n: int) -> list[Purchase]:
        return [self.purchase(prefix, i, f"bench_{self.tag}_{prefix}_user_{i}") for i in range(n)]

    def one_user(self, prefix: str, n: int) -> list[Purchase]:
        user = f"bench_{self.tag}_{prefix}_the_user"
        return [self.purchase(prefix, i, user) for i in range(n)]

    def signature(self, body: bytes, timestamp: int | None = None) -> str:
        return events.sign(body.decode(), self.secret, timestamp)

    def signed(self, purchases: list[Purchase]) -> list[tuple[bytes, str]]:
        now = int(time.time())
        return [(p.body, self.signature(p.body, now)) for p in purchases]


# -- Celery: stage messages off to the side, then release them to the worker at once ---------
def stage(producer, task_name: str, args_list: list[list], broker) -> None:
    if broker.llen(STAGING):
        raise RuntimeError(f"{STAGING} is not empty")
    for args in args_list:
        producer.send_task(task_name, args=args, queue=STAGING)
    staged = broker.llen(STAGING)
    if staged != len(args_list):
        raise RuntimeError(f"staged {staged} messages, expected {len(args_list)}")


def stage_credits(producer, factory: EventFactory, purchases: list[Purchase], broker) -> None:
    """The jobs the web tier would publish, Stripe-Signature included (the worker verifies it)."""
    now = int(time.time())
    stage(producer, task_names.PROCESS_STRIPE_EVENT,
          [[p.event_id, "checkout.session.completed", p.body.decode(), factory.signature(p.body, now)]
           for p in purchases], broker)


def release_and_drain(broker, timeout: float, queue: str = task_names.QUEUE, poll: float = 0.005) -> tuple[float, float]:
    """Move the staged list onto the worker's queue in one RENAME; return (released_at, drained_at).

    Drained: the queue is empty and nothing is delivered-but-unacknowledged, seen on two polls
    in a row (a message between BRPOP and its unacked record is never counted as done).
    """
    deadline = time.monotonic() + 30  # a worker's start-up work (its inbox sweep) finishes first
    while broker.llen(queue) or broker.hlen(UNACKED):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker's queue is not idle before release")
        time.sleep(0.05)
    released = time.time()
    broker.rename(STAGING, queue)
    first_empty = None
    while True:
        pipe = broker.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.hlen(UNACKED)
        queued, unacked = pipe.execute()
        now = time.time()
        if queued == 0 and unacked == 0:
            if first_empty is not None:
                return released, first_empty
            first_empty = now
        else:
            first_empty = None
        if now - released > timeout:
            raise TimeoutError(f"queue not drained after {timeout}s ({queued} queued, {unacked} unacked)")
        time.sleep(poll)


# -- Firestore checks ------------------------------------------------------------------------
def get_docs(db, collection: str, ids: list[str]) -> dict[str, dict | None]:
    out = {}
    for start in range(0, len(ids), 300):
        refs = [db.collection(collection).document(i) for i in ids[start:start + 300]]
        for snap in db.get_all(refs):
            out[snap.id] = snap.to_dict() if snap.exists else None
    return out


def wait_fulfilled(db, purchases: list[Purchase], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    ids = [p.session_id for p in purchases]
    while True:
        docs = get_docs(db, "purchases", ids)
        done = sum(1 for d in docs.values() if d and d.get("status") == FULFILLED)
        if done == len(ids) or time.monotonic() > deadline:
            return docs
        time.sleep(0.25)


@dataclass
class CreditCheck:
    ok: bool
    problems: list[str]
    fulfilled_at: dict[str, float]  # session id -> commit time (epoch seconds)
    attempts: collections.Counter

    @property
    def retried(self) -> int:
        return sum(n for a, n in self.attempts.items() if a != 1)


def check_credits(db, purchases: list[Purchase], docs: dict[str, dict] | None = None) -> CreditCheck:
    """Every purchase fulfilled once; every user's balance = the sum of their purchases' tokens."""
    problems = []
    docs = docs if docs is not None else get_docs(db, "purchases", [p.session_id for p in purchases])
    fulfilled_at, attempts = {}, collections.Counter()
    expected = collections.Counter()
    for p in purchases:
        expected[p.user_id] += p.tokens
        doc = docs.get(p.session_id)
        if not doc or doc.get("status") != FULFILLED:
            problems.append(f"purchase {p.session_id} not fulfilled ({(doc or {}).get('status')})")
            continue
        if doc.get("tokens") != p.tokens or doc.get("userId") != p.user_id:
            problems.append(f"purchase {p.session_id} has tokens={doc.get('tokens')} user={doc.get('userId')}")
        fulfilled_at[p.session_id] = doc["fulfilledAt"].timestamp()
        attempts[doc.get("creditAttempts")] += 1
    users = get_docs(db, "users", list(expected))
    for user_id, tokens in expected.items():
        doc = users.get(user_id) or {}
        if doc.get("tokenBalance") != tokens or doc.get("totalTokensPurchased") != tokens:
            problems.append(f"user {user_id}: balance {doc.get('tokenBalance')}, purchased "
                            f"{doc.get('totalTokensPurchased')}, expected {tokens}")
    ledger = get_docs(db, "transactions", [f"purchase_{p.session_id}" for p in purchases])
    missing = sum(1 for d in ledger.values() if d is None)
    if missing:
        problems.append(f"{missing} ledger entries missing")
    if len(problems) > 5:
        problems = problems[:5] + [f"... and {len(problems) - 5} more"]
    return CreditCheck(not problems, problems, fulfilled_at, attempts)
