"""The Records port: what services read (balances, ledger pages, purchases, events) and the
writes that carry no money (alerts, the operations log, checkout records, event records
outside a money change). Money changes go through ``core.ports.UnitOfWork`` only.

core/adapters/firestore_records.py implements it on Firestore; unit tests on a dict.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from core.domain.records import Alert


class InvalidCursor(ValueError):
    pass


class Records(Protocol):
    def record_event(self, event_id: str, fields: Mapping[str, Any], alert: Alert | None = None) -> None:
        """Merge ``fields`` into the event record, and write ``alert`` with it atomically."""

    def add_alert(self, alert: Alert) -> None: ...

    def receive_event(self, event_id: str, fields: Mapping[str, Any]) -> bool:
        """The inbox: create ``stripe_events/{event_id}`` with ``fields`` (status, payload, signature,
        ``deliveryCount`` 1, ``receivedAt``) in one write; if it exists, only count the delivery
        (never a second record, never a reset status). Returns whether it was new."""

    def request_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """A job that carries money, made durable before it is published (``jobs/{job_id}``,
        status ``requested``); asking again for the same job merges into the same record."""

    def finish_job(self, job_id: str, status: str, fields: Mapping[str, Any]) -> None: ...

    def requested_jobs(self, requested_before: float, limit: int) -> list[dict]:
        """Jobs still ``requested`` that were asked for before ``requested_before``, oldest first."""

    def received_events(self, received_before: float, limit: int) -> list[dict]:
        """Inbox records still ``received`` that arrived before ``received_before`` (unix seconds),
        oldest first, at most ``limit`` (the sweeper's batch)."""

    def ping(self) -> None: ...

    def iter_user_ids(self, batch_size: int): ...

    def user_ledger(self, user_id: str) -> tuple[Mapping[str, Any] | None, list[dict], list[dict]]:
        """The user doc, every ledger entry (with ``_created``/``_updated`` times) and purchase."""

    def get_dispute(self, dispute_id: str) -> Mapping[str, Any] | None: ...

    def list_events(self, status: str, limit: int) -> list[dict]: ...

    def get_event(self, event_id: str) -> Mapping[str, Any] | None: ...

    def add_ops_log(self, fields: Mapping[str, Any]) -> None: ...

    def get_user(self, user_id: str) -> Mapping[str, Any] | None: ...

    def get_purchase(self, session_id: str) -> Mapping[str, Any] | None: ...

    def record_checkout(self, session_id: str, fields: Mapping[str, Any]) -> None: ...

    def recent_purchases(self, user_id: str, since: float) -> list[dict]:
        """The user's payment records fulfilled since ``since`` (unix seconds), with ``id``."""

    def recent_checkouts(self, user_id: str, since: float) -> list[dict]:
        """The Checkout Sessions tokenbank created for the user since ``since``, with ``id``."""

    def get_checkout(self, session_id: str) -> Mapping[str, Any] | None: ...

    def find_purchase_by_payment_intent(self, payment_intent: str) -> tuple[str, Mapping[str, Any]] | None: ...

    def list_entries(self, user_id: str, limit: int, after_id: str | None) -> tuple[list[dict], str | None]:
        """The user's ledger, newest first; ``after_id`` is the last id of the previous page.
        Raises InvalidCursor if it is not one of the user's entries."""

    # -- accounts, holds and lots as domain values (core/adapters/firestore_holds.py) --------
    def get_account(self, user_id: str) -> Any: ...

    def get_hold(self, hold_id: str) -> Any: ...

    def open_holds(self, user_id: str) -> list:
        """The user's holds whose status is open (some may be past their expiry)."""

    def user_holds(self, user_id: str, limit: int | None = None) -> list:
        """Every hold of the user, whatever its status; with ``limit``, the newest that many."""

    def user_lots(self, user_id: str, limit: int | None = None) -> list:
        """Every lot of the user, open or spent; with ``limit``, the newest that many."""

    def due_expiries(self, now: float, limit: int, notice_until: float | None = None) -> list[str]:
        """Users with an open hold or an open lot whose expiry is at or before ``now``, and with
        ``notice_until``, users with an open lot expiring by then whose lot.expiring is not yet out."""

    # -- what support staff read (core/adapters/firestore_support.py) -------------------------
    # Each list is bounded by ``limit``, newest first; documents come with their ``id``.
    def user_purchases(self, user_id: str, limit: int) -> list[dict]: ...

    def user_events(self, user_id: str, limit: int) -> list[dict]:
        """The user's inbox records (``stripe_events`` with ``userId``), without their payloads."""

    def user_alerts(self, user_id: str, limit: int) -> list[dict]: ...

    def user_disputes(self, user_id: str, limit: int) -> list[dict]: ...

    def user_ops_log(self, user_id: str, limit: int) -> list[dict]: ...

    def start_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> bool:
        """Create ``ops_log/{entry_id}`` (with ``createdAt``) before an action takes effect;
        False if it exists (the same action asked again: the caller goes on, idempotently)."""

    def get_ops_log(self, entry_id: str) -> Mapping[str, Any] | None: ...

    def finish_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> None:
        """Merge the action's outcome into its ``ops_log`` entry."""

    def events_since(self, since: float, limit: int) -> list[dict]:
        """Inbox records received since ``since`` (unix seconds): ``status``, ``type``, ``receivedAt``."""

    def credits_since(self, since: float, types: tuple[str, ...], limit: int) -> list[dict]:
        """Ledger entries of ``types`` created since ``since``: ``type``, ``amount``, ``createdAt``."""

    def alerts_since(self, since: float, limit: int) -> list[dict]:
        """Security alerts created since ``since``: ``type``, ``userId``, ``createdAt``."""

    # -- outgoing events (core/adapters/firestore_outbox.py) ---------------------------------
    def undispatched_users(self, emitted_before: float, limit: int) -> list[str]:
        """Accounts with outbox events not yet dispatched, emitted before ``emitted_before``, oldest first."""

    def undispatched_seqs(self, user_id: str, limit: int) -> list[int]:
        """The seqs of the account's undispatched outbox events, lowest first."""

    def list_endpoints(self) -> list: ...

    def get_endpoint(self, endpoint_id: str) -> Any: ...

    def pending_deliveries(self, endpoint_id: str, limit: int) -> list:
        """The endpoint's queue: pending deliveries, first queued first (an account's by position)."""

    def dead_deliveries(self, endpoint_id: str | None, limit: int) -> list:
        """Dead-lettered deliveries (of one endpoint, or all), first queued first."""

    def get_delivery(self, delivery_id: str) -> Any: ...
