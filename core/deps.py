"""The dependencies every service function receives, built once by core.bootstrap."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.config import Settings
from core.domain.catalog import Catalog
from core.outbox_kick import OutboxKick
from core.ports import AccountBatch, Identity, Payments, PurchaseGate, RunLock, UnitOfWork, UserLock, WebhookSender
from core.store import Records


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Records  # reads and non-money writes
    redis: Any
    catalog: Catalog
    stripe: Any = None  # stripe.StripeClient, where a service talks to Stripe
    verify_id_token: Callable[[str], str] | None = None  # Firebase ID token -> uid (raises Unauthorized)
    clock: Callable[[], float] = field(default=time.time)
    uow: UnitOfWork | None = None  # every money change: one transaction
    payments: Payments | None = None  # what the worker asks Stripe
    gate: PurchaseGate | None = None  # purchase limits and velocity windows (Redis)
    lock: UserLock | None = None  # one user's money changes queue here (Redis)
    batch: AccountBatch | None = None  # concurrent works on one account, one transaction per batch
    identity: Identity | None = None  # Firebase Auth accounts and session cookies (the support console)
    # Stripe-Signature check: (payload, header, secrets, tolerance seconds or None) -> None, raises WebhookRefused
    verify_webhook: Callable[[str, str | None, tuple[str, ...], int | None], None] | None = None
    sender: WebhookSender | None = None  # outgoing webhooks, signed (Standard Webhooks)
    run_lock: RunLock | None = None  # one delivery run per endpoint, one fan-out per account (Redis)
    outbox_kick: OutboxKick = field(default_factory=OutboxKick)  # told after commits that wrote events
