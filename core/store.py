"""The storage port: what the services need from the database, as plain data.

``core.firestore_store`` implements it on Firestore; unit tests use an in-memory fake.
Every method that changes money-related state is one atomic transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

# Purchase statuses and the ones each status may replace.
PENDING, FULFILLED, REJECTED, FAILED, EXPIRED = "pending", "fulfilled", "rejected", "failed", "expired"
PURCHASE_STATUSES = (PENDING, FULFILLED, REJECTED, FAILED, EXPIRED)
REPLACEABLE_BY = {
    PENDING: (None, PENDING),
    FAILED: (None, PENDING, FAILED),
    EXPIRED: (None, PENDING, EXPIRED),
    REJECTED: (None, PENDING, FAILED, EXPIRED, REJECTED),
}


@dataclass(frozen=True)
class EventRef:
    """The Stripe event (or other caller) on whose behalf a change is made."""
    event_id: str | None
    event_type: str
    source: str = "webhook"  # webhook | success_page | reconciliation | replay
    created: int | None = None  # the Stripe event's creation time (for webhook-to-credit latency)


@dataclass(frozen=True)
class CreditRequest:
    session_id: str
    user_id: str
    package_id: str
    tokens: int
    amount_paid: int
    currency: str
    payment_intent: str | None
    event: EventRef


@dataclass(frozen=True)
class CreditResult:
    credited: bool  # False: the purchase was already fulfilled, nothing changed
    user_id: str
    balance_after: int | None
    attempts: int


@dataclass(frozen=True)
class StatusChange:
    session_id: str
    status: str
    user_id: str | None
    package_id: str | None
    event: EventRef
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Alert:
    id: str
    type: str
    user_id: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class EntryRequest:
    """One ledger entry of a fixed amount (spend, grant, adjustment, subscription allowance)."""
    entry_id: str
    user_id: str
    type: str
    amount: int  # signed
    fields: Mapping[str, Any]  # references: reason, actor, stripe ids...
    request_hash: str | None = None  # same id, different hash: a conflicting reuse of a key
    require_funds: bool = False  # spend: not frozen, amount <= balance
    allow_negative: bool = False


@dataclass(frozen=True)
class EntryResult:
    entry_id: str
    created: bool  # False: this entry already existed (an idempotent replay)
    amount: int
    balance_after: int
    conflict: bool = False  # the id exists with another request hash


class InsufficientFunds(Exception):
    def __init__(self, balance: int, amount: int):
        super().__init__(f"balance {balance} is below {amount}")
        self.balance = balance
        self.amount = amount


class AccountFrozen(Exception):
    def __init__(self, reasons: list[str]):
        super().__init__("account frozen: " + ", ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class ReversalRequest:
    """Take back a purchase's tokens: a refund (cumulative amount) or a lost dispute."""
    session_id: str
    entry_id: str
    type: str  # refund | dispute_reversal
    refunded_cents: int | None  # refund: Stripe's cumulative amount_refunded
    fields: Mapping[str, Any]
    unfreeze: str | None = None  # dispute id whose freeze ends with this reversal


@dataclass(frozen=True)
class ReversalResult:
    entry_id: str | None  # None: nothing left to take back
    amount: int
    balance_after: int | None
    user_id: str
    debt: int


class LedgerStore(Protocol):
    def credit_purchase(self, request: CreditRequest) -> CreditResult: ...

    def change_purchase_status(self, change: StatusChange, alert: Alert | None = None) -> bool:
        """Apply the change if the current status allows it; returns whether it applied."""

    def record_event(self, event_id: str, fields: Mapping[str, Any], alert: Alert | None = None) -> None:
        """Merge ``fields`` into the event record, and write ``alert`` with it atomically."""

    def add_alert(self, alert: Alert) -> None: ...

    def ping(self) -> None: ...

    def post_entry(self, request: EntryRequest) -> EntryResult: ...

    def reverse_purchase(self, request: ReversalRequest) -> ReversalResult: ...

    def apply_dispute(self, dispute_id: str, user_id: str, opened: bool, info: Mapping[str, Any]) -> bool:
        """Open (freeze the user's spending) or close (lift that freeze) a dispute, atomically
        with its ``disputes`` record. A dispute already closed is never reopened by a late
        ``created`` event; returns whether anything changed."""

    def find_purchase_by_payment_intent(self, payment_intent: str) -> tuple[str, Mapping[str, Any]] | None: ...

    def mirror_subscription(self, user_id: str, subscription: Mapping[str, Any], event_created: int) -> bool:
        """Store the subscription unless a newer event already did; returns whether it applied."""

    def iter_user_ids(self, batch_size: int): ...

    def user_ledger(self, user_id: str) -> tuple[Mapping[str, Any] | None, list[dict], list[dict]]:
        """The user doc, every ledger entry (with ``_created``/``_updated`` times) and purchase."""

    def get_dispute(self, dispute_id: str) -> Mapping[str, Any] | None: ...

    def list_events(self, status: str, limit: int) -> list[dict]: ...

    def get_event(self, event_id: str) -> Mapping[str, Any] | None: ...

    def add_ops_log(self, fields: Mapping[str, Any]) -> None: ...

    def get_user(self, user_id: str) -> Mapping[str, Any] | None: ...

    def get_purchase(self, session_id: str) -> Mapping[str, Any] | None: ...

    def list_entries(self, user_id: str, limit: int, after_id: str | None) -> tuple[list[dict], str | None]:
        """The user's ledger, newest first; ``after_id`` is the last id of the previous page.
        Raises InvalidCursor if it is not one of the user's entries."""
