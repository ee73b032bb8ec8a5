"""Lots: where a balance's tokens came from, when they expire, and the order they are spent in.

Every credit creates one lot (its id is the credit's ledger entry id): a source, an amount,
what remains, an optional expiry and, for paid lots, the cost basis and the payment. Debits
consume lots in one fixed order (``spend_order``):

1. soonest expiry first (a lot without expiry comes last);
2. at equal expiry, promotional before granted or adjusted, and those before paid — free
   tokens go first, so a refund can still take back what the payment bought;
3. then oldest first (creation time, then id, so the order is total).

A debit records on its ledger entry how much it took from each lot (``lots``: id -> signed
change), so each lot's remaining is its amount plus the changes entries made to it. A plan
lot may carry a rollover cap: at its expiry, what remains of it up to the cap (less what
earlier periods already rolled over) stays, without expiry; the rest expires.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

PURCHASE_LOT, PLAN_LOT, GRANT_LOT, PROMO_LOT, ADJUSTMENT_LOT = "purchase", "plan", "grant", "promo", "adjustment"
SOURCES = (PURCHASE_LOT, PLAN_LOT, GRANT_LOT, PROMO_LOT, ADJUSTMENT_LOT)
PAID_SOURCES = (PURCHASE_LOT, PLAN_LOT)
_RANK = {PROMO_LOT: 0, GRANT_LOT: 1, ADJUSTMENT_LOT: 1, PURCHASE_LOT: 2, PLAN_LOT: 2}


@dataclass(frozen=True)
class LotSpec:
    """What a credit says about the lot it creates (the amount and id come from the entry)."""
    source: str
    expires_at: int | None = None  # unix seconds
    cost_cents: int | None = None
    currency: str | None = None
    payment_id: str | None = None
    plan_id: str | None = None
    rollover_cap: int | None = None


@dataclass(frozen=True)
class Lot:
    id: str
    user_id: str
    source: str
    amount: int
    remaining: int
    created_at: float
    expires_at: int | None = None
    cost_cents: int | None = None
    currency: str | None = None
    payment_id: str | None = None
    plan_id: str | None = None
    rollover_cap: int | None = None
    rolled_over: bool = False
    expired: int = 0  # tokens that expired from this lot
    expiring_notified: bool = False  # its lot.expiring event was emitted
    migrated: bool = False  # made by the migration from a credit older than lots
    migrated_consumed: int = 0  # what spends took from it before lots existed

    @property
    def key(self) -> str:
        return self.id

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    @property
    def open(self) -> bool:
        return self.remaining > 0


def new_lot(lot_id: str, user_id: str, spec: LotSpec, amount: int, remaining: int, now: float) -> Lot:
    return Lot(lot_id, user_id, spec.source, amount, remaining, now, spec.expires_at, spec.cost_cents, spec.currency,
               spec.payment_id, spec.plan_id, spec.rollover_cap)


def spend_order(lot: Lot) -> tuple:
    expiry = math.inf if lot.expires_at is None else lot.expires_at
    return (expiry, _RANK.get(lot.source, 1), lot.created_at, lot.id)


def consume(lots: Mapping[str, Lot], amount: int, now: float, first: str | None = None,
            include_expired: bool = True) -> tuple[dict[str, Lot], dict[str, int], int]:
    """Take ``amount`` tokens from ``lots``: ``first`` (a refund's own lot) before the rest, the
    rest in spend order, expired lots only if ``include_expired``. Answers the lots changed,
    the changes (id -> negative amount) and what could not be taken (debt)."""
    order = sorted((lot for lot in lots.values() if lot.open and (include_expired or lot.live(now))),
                   key=lambda lot: (lot.id != first, spend_order(lot)))
    changed: dict[str, Lot] = {}
    taken: dict[str, int] = {}
    left = amount
    for lot in order:
        if left == 0:
            break
        take = min(lot.remaining, left)
        changed[lot.id] = replace(lot, remaining=lot.remaining - take)
        taken[lot.id] = -take
        left -= take
    return changed, taken, left


def live_total(lots: Iterable[Lot], now: float) -> int:
    return sum(lot.remaining for lot in lots if lot.live(now))


def expiring(lots: Iterable[Lot], now: float) -> list[tuple[int, int]]:
    """(remaining, expires_at) of the live lots that expire, soonest first, same dates merged."""
    merged: dict[int, int] = {}
    for lot in lots:
        if lot.open and lot.expires_at is not None and lot.live(now):
            merged[lot.expires_at] = merged.get(lot.expires_at, 0) + lot.remaining
    return [(amount, at) for at, amount in sorted(merged.items())]


def rollover_keep(lot: Lot, lots: Iterable[Lot]) -> int:
    """What of an expiring plan lot may roll over: its cap less what that plan already rolled over."""
    if lot.rollover_cap is None:
        return 0
    rolled = sum(o.remaining for o in lots if o.rolled_over and o.plan_id == lot.plan_id and o.id != lot.id)
    return max(0, min(lot.remaining, lot.rollover_cap - rolled))


def migrated_lots(user_id: str, unassigned: int, credits: list[tuple[str, str, int, float, LotSpec]]
                  ) -> list[Lot]:
    """One lot per credit without one (entry id, type, amount, created, spec), oldest first in
    ``credits``. The ``unassigned`` tokens (in no lot) go to the newest credit first — the spend
    order (oldest first, none expiring) applied to the spends that came before lots existed."""
    left = max(0, unassigned)
    lots = []
    for entry_id, _type, amount, created, spec in reversed(credits):
        remaining = min(amount, left)
        left -= remaining
        lot = new_lot(entry_id, user_id, spec, amount, remaining, created)
        lots.append(replace(lot, migrated=True, migrated_consumed=amount - remaining))
    return list(reversed(lots))
