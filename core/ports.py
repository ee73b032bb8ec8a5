"""Ports: what services and handlers need from the outside world, as Protocols.

Adapters implement them (core/adapters/, broker/); core/bootstrap.py picks one adapter
per port, at process start. Services and handlers import this module, never an adapter.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Tx(Protocol):
    """One atomic unit of work over domain values (Account, Entry, Payment, PaymentLink,
    Dispute, EventRecord, Alert — each has ``.key``). Reads see the committed state (or
    this unit's own writes); writes are buffered and committed together, or not at all."""

    attempt: int  # 1 on the first try; more when contention made the store run the work again

    def get(self, kind: type[T], key: str) -> T | None: ...

    def get_all(self, *wanted: tuple[type, str]) -> list[Any]:
        """Several values in one round trip, in the order asked (None where absent)."""

    def put(self, value: Any) -> None:
        """Create or replace the fields this value owns (others on the document stay)."""

    def add(self, value: Any) -> None:
        """Create; the unit fails if it already exists (ledger entries are append-only)."""


class UnitOfWork(Protocol):
    def run(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` atomically; on contention it may run again from scratch, so it must
        have no effect outside the Tx it is given."""


class AccountBatch(Protocol):
    """Many requests on one account, committed together (core/services/account_batch.py)."""

    def submit(self, user_id: str, work: Callable[[Tx], T], reads: Sequence[tuple[type, str]] = ()) -> T:
        """Run ``work`` in a transaction on ``user_id``'s account, possibly with other works
        queued for the same account. ``reads`` are fetched with the batch's first round trip.
        A ``core.domain.errors.Refusal`` raised by ``work`` is raised to this caller only,
        with none of this work's writes; any other error fails every work of the batch."""


class EventQueue(Protocol):
    def enqueue_event(self, event_id: str, event_type: str, payload: str, signature: str) -> None:
        """A verified event body with the Stripe-Signature header it came with (the worker
        verifies it again: it trusts nothing it did not verify itself)."""

    def request_fulfilment(self, session_id: str, source: str) -> None: ...

    def request_invoice_fulfilment(self, invoice_id: str, source: str) -> None: ...


class OutboxQueue(Protocol):
    """Jobs of the outgoing events (broker.event_queue.CeleryEventQueue)."""

    def request_fan_out(self, user_id: str, up_to_seq: int | None = None) -> None:
        """Queue the account's undispatched events (up to that seq) for the endpoints subscribed to them."""

    def request_delivery(self, endpoint_id: str, countdown: float = 0, expires: float | None = None) -> None:
        """Deliver the endpoint's queue (at once, or after ``countdown`` seconds; a request not
        started within ``expires`` seconds is dropped: the next sweep asks again)."""


class SendResult(Protocol):
    ok: bool  # a 2xx answer
    status: int | None  # the HTTP status, None if none came (no connection, timeout)
    error: str | None
    seconds: float


class WebhookSender(Protocol):
    def send(self, url: str, secrets: Sequence[str], message_id: str, body: str, timestamp: int,
             timeout: float) -> SendResult:
        """POST ``body`` signed per Standard Webhooks (webhook-id, webhook-timestamp, and one
        webhook-signature per secret, space-separated). Never raises for what the receiver did."""


class RunLock(Protocol):
    """One run at a time per key (Redis): an endpoint's deliveries, an account's fan-out."""

    def acquire(self, key: str) -> str | None:
        """A token if this caller now holds the key's lock, None if someone else does (no wait)."""

    def release(self, key: str, token: str) -> None: ...

    def note_kick(self, key: str) -> None:
        """A run was asked for while one held the lock: the holder looks again before it stops."""

    def take_kick(self, key: str) -> bool: ...


class GateDecision(Protocol):
    allowed: bool
    retry_after_seconds: int
    last_hour: int
    last_day: int


class Velocity(Protocol):
    last_hour: int
    last_day: int
    newly_recorded: bool

    def over(self, per_hour: int, per_day: int) -> bool: ...


class PurchaseGate(Protocol):
    """Paid purchases and open checkouts per user in sliding 1 h and 24 h windows."""

    def reserve(self, user_id: str, member: str, now_ms: int, expires_at_ms: int) -> GateDecision:
        """Count the user's purchases and open checkouts; if under the limits, hold a place."""

    def confirm(self, user_id: str, placeholder: str, session_id: str, expires_at_ms: int) -> None: ...

    def release(self, user_id: str, member: str) -> None: ...

    def record_purchase(self, user_id: str, session_id: str, now_ms: int) -> Velocity:
        """A paid purchase enters the windows (once per session) and leaves the open checkouts."""

    def windows_known(self, user_id: str) -> bool:
        """False after Redis lost the user's windows: rebuild them before admitting a checkout."""

    def restore(self, user_id: str, purchases: list[tuple[str, int]], open_checkouts: list[tuple[str, int]]) -> None:
        """Put back (session id, ms) of fulfilled purchases and (session id, expiry ms) of open checkouts."""


class UserLock(Protocol):
    def __call__(self, user_id: str) -> AbstractContextManager[None]:
        """Serialise one user's money changes (the transaction alone keeps them correct)."""


class Payments(Protocol):
    """What tokenbank asks Stripe (read only, on the worker's side and for the wallet's receipts),
    the one write: a user's subscription cancelled (the web tier, core/services/plans.py), and
    customer portal sessions (core/services/wallet.py; a session changes nothing by itself)."""

    def payment_intent(self, payment_intent_id: str) -> Mapping[str, Any] | None:
        """The PaymentIntent, or None if Stripe does not know it."""

    def invoice_for_payment_intent(self, payment_intent_id: str) -> Mapping[str, Any] | None:
        """The invoice that this PaymentIntent paid (with its subscription details), if any."""

    def payment_intent_of_invoice(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid this invoice, if any."""

    def invoice(self, invoice_id: str) -> Mapping[str, Any] | None:
        """The invoice, or None if Stripe does not know it."""

    def checkout_session(self, session_id: str) -> Mapping[str, Any]: ...

    def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> Mapping[str, Any] | None:
        """The one write (the web tier, for the user whose mirrored subscription this is): set the
        subscription to end at its period end (``cancel_at_period_end``), or with ``at_period_end``
        false end it now. Answers the subscription after the change, None if Stripe does not know
        it; any refusal raises."""

    def receipt_url(self, payment_intent_id: str) -> str | None:
        """The ``receipt_url`` of the charge that paid this PaymentIntent (its ``latest_charge``),
        None if Stripe does not know the PaymentIntent or it has no charge or receipt."""

    def subscription(self, subscription_id: str) -> Mapping[str, Any] | None:
        """The subscription, or None if Stripe does not know it."""

    def billing_portal_session(self, customer_id: str, return_url: str) -> str:
        """A customer portal session for this customer; answers its ``url``. Any refusal raises."""


class Identity(Protocol):
    """Firebase Auth as the support console needs it (core/services/support_access.py). Every
    token or cookie that fails verification — bad, expired, revoked, a disabled or deleted
    account — raises ``core.domain.errors.Unauthorized`` with a short reason."""

    def id_token_claims(self, id_token: str) -> Mapping[str, Any]:
        """The verified claims of a Firebase ID token (``uid``, ``auth_time``, ``email``…)."""

    def create_session(self, id_token: str, seconds: int) -> str:
        """A Firebase session cookie for the ID token's account, valid ``seconds``."""

    def session_person(self, cookie: str) -> Any:
        """The account a session cookie was minted for, as it is now (``Person``), after
        checking the cookie was not revoked (issued before the account's tokens were revoked)
        and the account is enabled."""

    def person(self, uid: str) -> Any:
        """The account as it is now (``core.domain.operators.Person``), or None."""

    def person_by_email(self, email: str) -> Any:
        """The account with this email, or None."""

    def set_admin_claim(self, uid: str, admin: bool) -> Any:
        """Set (``admin: true``) or remove the custom claim, keeping the account's other claims;
        answers the account as it is then."""


Clock = Callable[[], float]
