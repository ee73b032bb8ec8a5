"""In-memory fakes of tokenbank's ports and small builders for Stripe-shaped data.

``FakeLedgerStore`` holds the collections as plain dicts a test can read, serves the Records
port from them and runs units of work on them through the production ``DocumentTx`` over
a dict backend: it holds no money rule, so it cannot drift from the domain. Document ids
are checked the way Firestore checks them. Nothing here opens a socket.
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone
import itertools
from collections import Counter
import json
from typing import Any, Callable, Mapping

import fakeredis
import stripe
from google.api_core import exceptions as gexc

from core.adapters.catalog_file import load_catalog
from core.config import load_settings
from core.deps import Deps
from core.adapters.documents import NOW, DocumentTx
from core.adapters.redis_limits import RedisLimits
from core.adapters.stripe_signature import verify_signature
from core.services.account_batch import AccountBatcher
from core.domain.records import Alert
from tests.unit.fake_lot_reads import FakeLotReads
from tests.unit.fake_outbox_reads import FakeOutboxReads
from tests.unit.fake_support import FakeIdentity, FakeSupportReads

FIXED_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WEBHOOK_SECRET = "whsec_unit_primary"
OLD_WEBHOOK_SECRET = "whsec_unit_previous"
PACKAGES = {"starter": (50, 499), "basic": (200, 1499), "pro": (500, 2999), "premium": (1000, 4999)}


def check_firestore_doc_id(doc_id: object) -> None:
    """Raise ValueError for an id Firestore would not accept as one document id."""
    if (not isinstance(doc_id, str) or not doc_id or "/" in doc_id or doc_id in (".", "..")
            or (doc_id.startswith("__") and doc_id.endswith("__")) or len(doc_id.encode()) > 1500):
        raise ValueError(f"not a Firestore document id: {doc_id!r}")


class _DictBackend:
    """The few transaction operations DocumentTx needs, on plain dicts; applied at commit.
    ``counts`` (shared with the unit of work) counts document reads and writes, as Firestore bills them."""

    def __init__(self, docs: dict[str, dict[str, dict]], now: Callable[[], Any], counts: Counter):
        self.docs, self.now, self.ops, self.counts = docs, now, [], counts

    def read(self, paths):
        for _, doc_id in paths:
            check_firestore_doc_id(doc_id)
        self.counts["reads"] += len(paths)
        return [copy.deepcopy(self.docs.get(c, {}).get(d)) for c, d in paths]

    def set(self, path, fields, merge):
        self.ops.append(("set", path, fields))

    def create(self, path, fields):
        check_firestore_doc_id(path[1])
        if path[1] in self.docs.get(path[0], {}) or any(op[:2] == ("create", path) for op in self.ops):
            raise gexc.AlreadyExists(f"{path[0]}/{path[1]} exists")
        self.ops.append(("create", path, fields))

    def commit(self) -> None:
        self.counts["writes"] += len(self.ops)
        stamp = self.now()
        for kind, (collection, doc_id), fields in self.ops:
            check_firestore_doc_id(doc_id)
            values = {k: (stamp if v is NOW else copy.deepcopy(v)) for k, v in fields.items()}
            target = self.docs.setdefault(collection, {})
            if kind == "create":
                target[doc_id] = values
            else:
                target.setdefault(doc_id, {}).update(values)


class FakeUnitOfWork:
    """core.ports.UnitOfWork on dicts: all of a unit's writes or none. ``fail`` raises once.
    ``on_events`` is told, after a commit, the accounts whose new outgoing events it wrote."""

    def __init__(self, docs: dict, now: Callable[[], Any]):
        self.docs, self.now, self.fail, self.counts = docs, now, [], Counter()
        self.on_events: Callable[[list[str]], None] | None = None

    def run(self, work):
        if self.fail:
            raise self.fail.pop(0)
        self.counts["transactions"] += 1
        backend = _DictBackend(self.docs, self.now, self.counts)
        tx = DocumentTx(backend)
        result = work(tx)
        tx.flush()
        backend.commit()
        if self.on_events is not None and tx.emitted():  # {user id: last seq}
            self.on_events(tx.emitted())
        return result


class FakeLedgerStore(FakeLotReads, FakeSupportReads, FakeOutboxReads):
    """The Records port and a unit of work over the same dicts (``users``, ``ledger``,
    ``purchases``, ``events``, ``alerts`` are the collections). ``fail[method] = exc`` makes a
    Records method raise ``exc``; ``uow.fail.append(exc)`` makes the next unit of work raise."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, dict]] = {name: {} for name in (
            "users", "transactions", "purchases", "stripe_events", "security_alerts", "payment_intents", "disputes",
            "checkouts", "ops_log", "jobs", "lots", "holds", "outbox", "outbox_cursors", "webhook_endpoints",
            "webhook_subscriptions", "deliveries")}
        self.users, self.ledger, self.purchases = self.docs["users"], self.docs["transactions"], self.docs["purchases"]
        self.events, self.alerts = self.docs["stripe_events"], self.docs["security_alerts"]
        self.alert_writes: list[str] = []  # alert ids written outside a unit of work, in order
        self.fail: dict[str, BaseException] = {}
        self._ticks = itertools.count()
        self.uow = FakeUnitOfWork(self.docs, lambda: datetime.fromtimestamp(FIXED_NOW + next(self._ticks) / 1000,
                                                                          timezone.utc))

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    def record_event(self, event_id: str, fields: Mapping[str, Any], alert: Alert | None = None) -> None:
        self._maybe_fail("record_event")
        check_firestore_doc_id(event_id)
        self.events.setdefault(event_id, {}).update(copy.deepcopy(dict(fields)))
        if alert is not None:
            self._write_alert(alert)

    def add_alert(self, alert: Alert) -> None:
        self._maybe_fail("add_alert")
        self._write_alert(alert)

    def _write_alert(self, alert: Alert) -> None:
        check_firestore_doc_id(alert.id)
        self.alert_writes.append(alert.id)
        self.alerts[alert.id] = {"type": alert.type, "userId": alert.user_id, "details": dict(alert.details),
                                 "createdAt": self.uow.now()}

    def receive_event(self, event_id: str, fields: Mapping[str, Any]) -> bool:
        self._maybe_fail("receive_event")
        check_firestore_doc_id(event_id)
        self.uow.counts["writes"] += 1  # Firestore: one create, or one update of a known event
        if event_id in self.events:
            record = self.events[event_id]
            record["deliveryCount"] = record.get("deliveryCount", 0) + 1
            return False
        now = self.uow.now()
        self.events[event_id] = {**copy.deepcopy(dict(fields)), "deliveryCount": 1, "receivedAt": now,
                                 "lastReceivedAt": now}
        return True

    def request_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        self._maybe_fail("request_job")
        self.docs["jobs"].setdefault(job_id, {}).update({**dict(fields), "status": "requested",
                                                         "requestedAt": self.uow.now()})

    def finish_job(self, job_id: str, status: str, fields: Mapping[str, Any]) -> None:
        self.docs["jobs"].setdefault(job_id, {}).update({**dict(fields), "status": status})

    def requested_jobs(self, requested_before: float, limit: int) -> list[dict]:
        found = [{"id": k, **v} for k, v in self.docs["jobs"].items()
                 if v.get("status") == "requested" and v["requestedAt"].timestamp() < requested_before]
        return copy.deepcopy(sorted(found, key=lambda r: r["requestedAt"])[:limit])

    def received_events(self, received_before: float, limit: int) -> list[dict]:
        found = [{"id": k, **v} for k, v in self.events.items()
                 if v.get("status") == "received" and v["receivedAt"].timestamp() < received_before]
        return copy.deepcopy(sorted(found, key=lambda r: r["receivedAt"])[:limit])

    def add_ops_log(self, fields: Mapping[str, Any]) -> None:
        self.docs["ops_log"][f"op_{len(self.docs['ops_log']) + 1}"] = dict(fields)

    def get_user(self, user_id: str) -> Mapping[str, Any] | None:
        self._maybe_fail("get_user")
        return copy.deepcopy(self.users.get(user_id))

    def get_purchase(self, session_id: str) -> Mapping[str, Any] | None:
        self._maybe_fail("get_purchase")
        return copy.deepcopy(self.purchases.get(session_id))

    def record_checkout(self, session_id: str, fields: Mapping[str, Any]) -> None:
        self.docs["checkouts"][session_id] = {**dict(fields), "createdAt": FIXED_NOW}

    def recent_purchases(self, user_id: str, since: float) -> list[dict]:
        return [{"id": k, **copy.deepcopy(v)} for k, v in self.purchases.items() if v.get("userId") == user_id
                and isinstance(v.get("fulfilledAt"), datetime) and v["fulfilledAt"].timestamp() >= since]

    def recent_checkouts(self, user_id: str, since: float) -> list[dict]:
        return [{"id": k, **copy.deepcopy(v)} for k, v in self.docs["checkouts"].items()
                if v.get("userId") == user_id and v.get("createdAt", since) >= since]

    def get_checkout(self, session_id: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.docs["checkouts"].get(session_id))

    def get_event(self, event_id: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.events.get(event_id))

    def get_dispute(self, dispute_id: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.docs["disputes"].get(dispute_id))

    def list_events(self, status: str, limit: int) -> list[dict]:
        return [{"id": k, **v} for k, v in self.events.items() if v.get("status") == status][:limit]

    def find_purchase_by_payment_intent(self, payment_intent: str):
        for k, v in self.purchases.items():
            if v.get("paymentIntentId") == payment_intent:
                return k, copy.deepcopy(v)
        return None

    def iter_user_ids(self, batch_size: int):
        yield from sorted(self.users)

    def user_ledger(self, user_id: str):
        entries = [{"id": k, **v, "_created": v.get("createdAt"), "_updated": v.get("createdAt")}
                   for k, v in self.ledger.items() if v["userId"] == user_id]
        purchases = [{"id": k, **v} for k, v in self.purchases.items() if v.get("userId") == user_id]
        return copy.deepcopy(self.users.get(user_id)), entries, purchases

    def list_entries(self, user_id: str, limit: int, after_id: str | None) -> tuple[list[dict], str | None]:
        from core.store import InvalidCursor

        self._maybe_fail("list_entries")
        mine = [{"id": k, **v} for k, v in self.ledger.items() if v["userId"] == user_id]
        mine.reverse()  # newest first: entries are appended in commit order
        if after_id is not None:
            ids = [e["id"] for e in mine]
            if after_id not in ids:
                raise InvalidCursor("cursor is not one of this user's ledger entries")
            mine = mine[ids.index(after_id) + 1:]
        page = mine[:limit]
        return copy.deepcopy(page), (page[-1]["id"] if len(mine) > limit else None)

    def ping(self) -> None:
        self._maybe_fail("ping")

    # -- helpers for assertions --------------------------------------------------------
    def balance(self, user_id: str) -> int:
        return self.users.get(user_id, {}).get("tokenBalance", 0)

    def ledger_sum(self, user_id: str) -> int:
        return sum(e["amount"] for e in self.ledger.values() if e["userId"] == user_id)

    def status(self, session_id: str) -> str | None:
        return self.purchases.get(session_id, {}).get("status")


class FakePayments:
    """core.ports.Payments from dicts a test fills: PaymentIntents, invoices, sessions."""

    def __init__(self) -> None:
        self.intents: dict[str, dict] = {}
        self.invoices_by_intent: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}

    def payment_intent(self, payment_intent_id: str):
        return copy.deepcopy(self.intents.get(payment_intent_id))

    def invoice_for_payment_intent(self, payment_intent_id: str):
        return copy.deepcopy(self.invoices_by_intent.get(payment_intent_id))

    def payment_intent_of_invoice(self, invoice_id: str):
        return next((pi for pi, inv in self.invoices_by_intent.items() if inv.get("id") == invoice_id), None)

    def invoice(self, invoice_id: str):
        return next((copy.deepcopy(i) for i in self.invoices_by_intent.values() if i.get("id") == invoice_id), None)

    def checkout_session(self, session_id: str):
        return copy.deepcopy(self.sessions[session_id])

    # -- subscriptions: cancel_subscription (the port's one write) --------------------------
    cancel_error: BaseException | None = None  # set it to make the next cancellations raise (Stripe refuses)

    @property
    def subscriptions(self) -> dict[str, dict]:
        """Stripe-shaped subscriptions by id, for cancel_subscription (a test fills it)."""
        return self.__dict__.setdefault("_subscriptions", {})

    @property
    def cancellations(self) -> list[tuple[str, bool]]:
        """Every cancel_subscription call, in order: (subscription id, at_period_end)."""
        return self.__dict__.setdefault("_cancellations", [])

    def cancel_subscription(self, subscription_id: str, at_period_end: bool = True):
        self.cancellations.append((subscription_id, at_period_end))
        if self.cancel_error is not None:
            raise self.cancel_error
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            return None
        if sub.get("status") == "canceled":  # as Stripe: an ended subscription cannot be changed
            raise stripe.InvalidRequestError("A canceled subscription can only update its metadata.", "id",
                                             http_status=400)
        if at_period_end:
            sub["cancel_at_period_end"] = True
        else:
            sub.update(status="canceled", canceled_at=int(FIXED_NOW), ended_at=int(FIXED_NOW))
        return copy.deepcopy(sub)


    # -- the wallet: receipts, subscriptions and customer portal sessions ------------------
    wallet_error: BaseException | None = None  # set it to make receipt and portal calls raise (Stripe down)

    @property
    def receipts(self) -> dict[str, str]:
        """PaymentIntent id -> its charge's receipt_url (a test fills it)."""
        return self.__dict__.setdefault("_receipts", {})

    @property
    def portal_sessions(self) -> list[tuple[str, str]]:
        """Every billing_portal_session call: (customer, return_url)."""
        return self.__dict__.setdefault("_portal_sessions", [])

    def receipt_url(self, payment_intent_id: str):
        if self.wallet_error is not None:
            raise self.wallet_error
        return self.receipts.get(payment_intent_id)

    def subscription(self, subscription_id: str):
        if self.wallet_error is not None:
            raise self.wallet_error
        return copy.deepcopy(self.subscriptions.get(subscription_id))

    def billing_portal_session(self, customer_id: str, return_url: str) -> str:
        if self.wallet_error is not None:
            raise self.wallet_error
        self.portal_sessions.append((customer_id, return_url))
        return f"https://billing.stripe.test/p/session/test_{len(self.portal_sessions)}"


class FakeQueue:
    """EventQueue that remembers what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.signatures: list[str] = []

    def enqueue_event(self, event_id: str, event_type: str, payload: str, signature: str) -> None:
        self.events.append((event_id, event_type, payload))
        self.signatures.append(signature)


class BrokenQueue(FakeQueue):
    """EventQueue whose broker refuses every job."""

    def enqueue_event(self, event_id: str, event_type: str, payload: str, signature: str) -> None:
        raise ConnectionError("broker down")



def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def make_deps(store: FakeLedgerStore | None = None, redis=None, clock: Callable[[], float] | None = None,
              payments: FakePayments | None = None, identity: FakeIdentity | None = None, **env: str) -> Deps:
    settings = load_settings({"TOKENBANK_ENV": "test",
                              "STRIPE_WEBHOOK_SECRET": f"{OLD_WEBHOOK_SECRET},{WEBHOOK_SECRET}", **env})
    store = store if store is not None else FakeLedgerStore()
    redis = redis if redis is not None else fake_redis()
    limits = RedisLimits(redis, settings)  # the real Redis adapter, on fakeredis
    return Deps(settings=settings, store=store, redis=redis,
                catalog=load_catalog(), clock=clock or (lambda: FIXED_NOW), uow=store.uow, payments=payments or FakePayments(), gate=limits, lock=limits,
                batch=AccountBatcher(store.uow, limits),  # the same lock as a lone unit of work
                identity=identity if identity is not None else FakeIdentity(), verify_webhook=verify_signature)


# -- Stripe-shaped data ---------------------------------------------------------------
_seq = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_unit_{next(_seq)}"


def checkout_session(user_id: str = "user_1", package: str = "starter", *, session_id: str | None = None,
                     payment_status: str = "paid", **overrides: Any) -> dict[str, Any]:
    tokens, price = PACKAGES.get(package, (50, 499))
    obj: dict[str, Any] = {
        "id": session_id or new_id("cs"),
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": payment_status,
        "client_reference_id": user_id,
        "metadata": {"userId": user_id, "packageId": package, "tokens": str(tokens)},
        "amount_total": price,
        "currency": "usd",
        "payment_intent": new_id("pi"),
        "customer_details": {"email": "buyer@example.com"},
    }
    obj.update(overrides)
    return obj


def event(obj: Mapping[str, Any], event_type: str = "checkout.session.completed", *,
          event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or new_id("evt"), "object": "event", "type": event_type, "created": int(FIXED_NOW),
            "livemode": False, "data": {"object": copy.deepcopy(dict(obj))}}


def event_json(obj: Mapping[str, Any], event_type: str = "checkout.session.completed", **kw: Any) -> str:
    return json.dumps(event(obj, event_type, **kw))


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def bare(doc: Mapping[str, Any] | None) -> dict:
    """A stored document without the store's own stamps (createdAt, updatedAt, <status>At) and
    empty fields, for comparing with what a test expects the domain to have written."""
    return {k: v for k, v in (doc or {}).items()
            if v is not None and not (k.endswith("At") and isinstance(v, datetime))}
