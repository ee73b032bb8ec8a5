"""In-memory fakes of tokenbank's ports and small builders for Stripe-shaped data.

``FakeLedgerStore`` implements ``core.store.LedgerStore`` with the semantics of
``core.firestore_store.FirestoreLedgerStore``: every method applies all of its writes or
none, document ids are checked the way Firestore checks them, and the collections are
plain dicts a test can read. Nothing here opens a socket.
"""
from __future__ import annotations

import copy
import itertools
import json
from typing import Any, Callable, Mapping

import fakeredis
import stripe
from google.api_core import exceptions as gexc

from core.catalog import load_catalog
from core.config import load_settings
from core.deps import Deps
from core.store import (
    FULFILLED, REPLACEABLE_BY, Alert, CreditRequest, CreditResult, EntryRequest, EntryResult, StatusChange,
)

FIXED_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WEBHOOK_SECRET = "whsec_unit_primary"
OLD_WEBHOOK_SECRET = "whsec_unit_previous"
PACKAGES = {"starter": (50, 499), "basic": (200, 1499), "pro": (500, 2999), "premium": (1000, 4999)}
TOTAL_FIELDS = ("tokenBalance", "totalTokensEarned", "totalTokensPurchased", "totalTokensSpent")


def check_firestore_doc_id(doc_id: object) -> None:
    """Raise ValueError for an id Firestore would not accept as one document id."""
    if (not isinstance(doc_id, str) or not doc_id or "/" in doc_id or doc_id in (".", "..")
            or (doc_id.startswith("__") and doc_id.endswith("__")) or len(doc_id.encode()) > 1500):
        raise ValueError(f"not a Firestore document id: {doc_id!r}")


class FakeLedgerStore:
    """LedgerStore in memory. ``fail[method] = exc`` makes that method raise ``exc``."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.ledger: dict[str, dict[str, Any]] = {}
        self.purchases: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.alert_writes: list[str] = []  # every alert id written, in order, repeats included
        self.fail: dict[str, BaseException] = {}

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    def _write_event(self, event_id: str | None, fields: Mapping[str, Any], pending: list[Callable[[], None]]) -> None:
        if event_id is None:
            return
        check_firestore_doc_id(event_id)
        pending.append(lambda: self.events.setdefault(event_id, {}).update(fields))

    def _write_alert(self, alert: Alert, pending: list[Callable[[], None]]) -> None:
        check_firestore_doc_id(alert.id)
        doc = {"type": alert.type, "userId": alert.user_id, "details": dict(alert.details)}

        def apply() -> None:
            self.alerts[alert.id] = doc
            self.alert_writes.append(alert.id)
        pending.append(apply)

    @staticmethod
    def _commit(pending: list[Callable[[], None]]) -> None:
        for write in pending:
            write()

    # -- LedgerStore -------------------------------------------------------------------
    def credit_purchase(self, request: CreditRequest) -> CreditResult:
        self._maybe_fail("credit_purchase")
        for doc_id in (request.session_id, request.user_id, f"purchase_{request.session_id}"):
            check_firestore_doc_id(doc_id)
        pending: list[Callable[[], None]] = []
        event_fields = {"type": request.event.event_type, "status": "processed",
                        "sessionId": request.session_id, "userId": request.user_id}
        purchase = self.purchases.get(request.session_id)
        if purchase is not None and purchase.get("status") == FULFILLED:
            self._write_event(request.event.event_id, {**event_fields, "outcome": "already_fulfilled"}, pending)
            self._commit(pending)
            return CreditResult(False, purchase.get("userId"), None, 1)
        entry_id = f"purchase_{request.session_id}"
        if entry_id in self.ledger:
            raise gexc.AlreadyExists(f"transactions/{entry_id} already exists")
        totals = {name: int(self.users.get(request.user_id, {}).get(name) or 0) for name in TOTAL_FIELDS}
        balance_after = totals["tokenBalance"] + request.tokens
        user = {**totals, "tokenBalance": balance_after,
                "totalTokensPurchased": totals["totalTokensPurchased"] + request.tokens}
        entry = {"userId": request.user_id, "type": "purchase", "amount": request.tokens,
                 "balanceAfter": balance_after, "stripeEventId": request.event.event_id,
                 "source": request.event.source, "checkoutSessionId": request.session_id,
                 "paymentIntentId": request.payment_intent, "packageId": request.package_id,
                 "amountPaid": request.amount_paid, "currency": request.currency}
        purchase_fields = {"userId": request.user_id, "packageId": request.package_id, "tokens": request.tokens,
                           "amountPaid": request.amount_paid, "currency": request.currency,
                           "paymentIntentId": request.payment_intent, "status": FULFILLED, "reason": None,
                           "ledgerEntryId": entry_id,
                           "fulfilledBy": {"eventId": request.event.event_id,
                                           "eventType": request.event.event_type, "source": request.event.source}}
        pending.append(lambda: self.users.setdefault(request.user_id, {}).update(user))
        pending.append(lambda: self.ledger.__setitem__(entry_id, entry))
        pending.append(lambda: self.purchases.setdefault(request.session_id, {}).update(purchase_fields))
        self._write_event(request.event.event_id, {**event_fields, "outcome": "credited"}, pending)
        self._commit(pending)
        return CreditResult(True, request.user_id, balance_after, 1)

    def change_purchase_status(self, change: StatusChange, alert: Alert | None = None) -> bool:
        self._maybe_fail("change_purchase_status")
        check_firestore_doc_id(change.session_id)
        pending: list[Callable[[], None]] = []
        current = self.purchases.get(change.session_id, {}).get("status")
        allowed = current in REPLACEABLE_BY[change.status]
        if allowed:
            fields: dict[str, Any] = {"status": change.status, "reason": change.reason, "detail": change.detail,
                                      "lastEvent": {"eventId": change.event.event_id,
                                                    "eventType": change.event.event_type,
                                                    "source": change.event.source}}
            if change.user_id:
                fields["userId"] = change.user_id
            if change.package_id:
                fields["packageId"] = change.package_id
            pending.append(lambda: self.purchases.setdefault(change.session_id, {}).update(fields))
            if alert is not None:
                self._write_alert(alert, pending)
        outcome = change.status if allowed else f"{change.status}_skipped_purchase_is_{current}"
        self._write_event(change.event.event_id, {"type": change.event.event_type, "status": "processed",
                                                  "outcome": outcome, "sessionId": change.session_id,
                                                  "userId": change.user_id}, pending)
        self._commit(pending)
        return allowed

    def record_event(self, event_id: str, fields: Mapping[str, Any], alert: Alert | None = None) -> None:
        self._maybe_fail("record_event")
        pending: list[Callable[[], None]] = []
        self._write_event(event_id, dict(fields), pending)
        if alert is not None:
            self._write_alert(alert, pending)
        self._commit(pending)

    def add_alert(self, alert: Alert) -> None:
        self._maybe_fail("add_alert")
        pending: list[Callable[[], None]] = []
        self._write_alert(alert, pending)
        self._commit(pending)

    # -- ledger entries and subscriptions (token plans) ---------------------------------
    def post_entry(self, request: EntryRequest) -> EntryResult:
        """As FirestoreLedgerStore.post_entry: an existing id is an idempotent replay."""
        from core.ledger import total_delta
        from core.store import AccountFrozen, InsufficientFunds

        self._maybe_fail("post_entry")
        check_firestore_doc_id(request.user_id)
        check_firestore_doc_id(request.entry_id)
        existing = self.ledger.get(request.entry_id)
        if existing is not None:
            conflict = request.request_hash is not None and existing.get("requestHash") != request.request_hash
            return EntryResult(request.entry_id, False, existing["amount"], existing["balanceAfter"], conflict)
        user = self.users.get(request.user_id, {})
        totals = {name: int(user.get(name) or 0) for name in TOTAL_FIELDS}
        balance = totals["tokenBalance"]
        if request.require_funds:
            frozen = sorted((user.get("frozenBy") or {}).keys())
            if frozen:
                raise AccountFrozen(frozen)
            if balance < -request.amount:
                raise InsufficientFunds(balance, -request.amount)
        balance_after = balance + request.amount
        if balance_after < 0 and not request.allow_negative:
            raise InsufficientFunds(balance, -request.amount)
        total, delta = total_delta(request.type, request.amount)
        user_fields = {**totals, "tokenBalance": balance_after, total: totals[total] + delta,
                       "debt": max(0, -balance_after)}
        entry = {**request.fields, "userId": request.user_id, "type": request.type, "amount": request.amount,
                 "balanceAfter": balance_after, "requestHash": request.request_hash}
        self.users.setdefault(request.user_id, {}).update(user_fields)
        self.ledger[request.entry_id] = entry
        return EntryResult(request.entry_id, True, request.amount, balance_after)

    def mirror_subscription(self, user_id: str, subscription: Mapping[str, Any], event_created: int) -> bool:
        """As FirestoreLedgerStore.mirror_subscription: a set with merge (nested fields merge)."""
        self._maybe_fail("mirror_subscription")
        check_firestore_doc_id(user_id)
        stored = self.users.get(user_id, {}).get("subscription") or {}
        if int(stored.get("eventCreated") or 0) > event_created:
            return False  # a newer event already applied
        merged = {**copy.deepcopy(stored), **copy.deepcopy(dict(subscription)), "eventCreated": event_created}
        self.users.setdefault(user_id, {})["subscription"] = merged
        return True

    def get_user(self, user_id: str) -> Mapping[str, Any] | None:
        self._maybe_fail("get_user")
        return copy.deepcopy(self.users.get(user_id))

    def get_purchase(self, session_id: str) -> Mapping[str, Any] | None:
        self._maybe_fail("get_purchase")
        return copy.deepcopy(self.purchases.get(session_id))

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


class FakeQueue:
    """EventQueue that remembers what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.ignored: list[tuple[str, str]] = []

    def enqueue_event(self, event_id: str, event_type: str, payload: str) -> None:
        self.events.append((event_id, event_type, payload))

    def enqueue_ignored(self, event_id: str, event_type: str) -> None:
        self.ignored.append((event_id, event_type))


class BrokenQueue(FakeQueue):
    """EventQueue whose broker refuses every job."""

    def enqueue_event(self, event_id: str, event_type: str, payload: str) -> None:
        raise ConnectionError("broker down")

    def enqueue_ignored(self, event_id: str, event_type: str) -> None:
        raise ConnectionError("broker down")


def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def make_deps(store: FakeLedgerStore | None = None, redis=None, clock: Callable[[], float] | None = None,
              **env: str) -> Deps:
    settings = load_settings({"TOKENBANK_ENV": "test",
                              "STRIPE_WEBHOOK_SECRET": f"{OLD_WEBHOOK_SECRET},{WEBHOOK_SECRET}", **env})
    return Deps(settings=settings, store=store if store is not None else FakeLedgerStore(),
                redis=redis if redis is not None else fake_redis(), catalog=load_catalog(),
                clock=clock or (lambda: FIXED_NOW))


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
