"""An account: one user's balance, its lots and open holds, totals, debt, freezes and subscription.

Rules:
- a credit (purchase, plan allowance, grant, positive adjustment) always applies and creates
  a lot; when the balance is negative it repays the debt first (the lot keeps the rest);
- a spend or a new hold needs an unfrozen account and ``available`` tokens: the balance,
  less what open holds keep, less what expired lots still hold and will lose;
- a capture of an open hold always applies, up to the held amount (even when frozen: the
  hold was placed before; even below zero after a refund took tokens the hold counted on —
  then it is debt, like any reversal);
- a negative adjustment may not take more than is available (nor what open holds keep);
- a reversal (refund, lost dispute) always applies, from its payment's own lot first, and
  a balance below zero is debt;
- an expired lot loses what remains of it, except what open holds still need (it expires
  when they end) and, for a plan lot, what its rollover cap keeps;
- ``debt`` is always ``max(0, -balance)``; while in debt no lot has anything left; each
  total moves with its entry type (ledger), so balance = Σ ledger = Σ lots.remaining − debt.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from core.domain.errors import AccountFrozen, InsufficientFunds
from core.domain.ledger import (
    ADJUSTMENT, ENTRY_TYPES, EARNED, EXPIRED, EXPIRY, GRANT, PURCHASED, REVERSAL_TYPES, SPENT, SPEND, Entry,
    expiry_entry_id, total_delta,
)
from core.domain.lots import (
    ADJUSTMENT_LOT, GRANT_LOT, Lot, LotSpec, consume, new_lot, rollover_keep, spend_order,
)
from core.domain.outbox import (
    CREDITED, DEBITED, FROZEN, HOLD_CAPTURED, HOLD_CREATED, HOLD_EXPIRED, HOLD_RELEASED, LOT_EXPIRED, LOT_EXPIRING,
    PURCHASE_FAILED, REFUNDED, UNFROZEN, AccountEvent, new_event,
)
from core.domain.subscription import mirror

_DEFAULT_SOURCE = {GRANT: GRANT_LOT, ADJUSTMENT: ADJUSTMENT_LOT}


@dataclass(frozen=True)
class Account:
    user_id: str
    balance: int = 0
    purchased: int = 0
    earned: int = 0
    spent: int = 0
    frozen_by: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    subscription: Mapping[str, Any] | None = None
    exists: bool = False
    expired: int = 0
    lots: Mapping[str, Lot] = field(default_factory=dict)  # the open lots (remaining > 0)
    holds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # open holds: id -> amount, expiresAt
    changed_lots: Mapping[str, Lot] = field(default_factory=dict)  # lots this unit of work changed
    seq: int = 0  # outgoing events emitted so far (core/domain/outbox.py)
    events: tuple[AccountEvent, ...] = ()  # the events this unit of work emitted

    @property
    def key(self) -> str:
        return self.user_id

    @property
    def debt(self) -> int:
        return max(0, -self.balance)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_by)

    def held(self, now: float) -> int:
        """What the open holds keep (an expired hold keeps nothing: it can no longer be captured)."""
        return sum(int(h["amount"]) for h in self.holds.values() if float(h["expiresAt"]) > now)

    def totals(self) -> dict[str, int]:
        return {PURCHASED: self.purchased, EARNED: self.earned, SPENT: self.spent, EXPIRED: self.expired}

    def emit(self, event_type: str, now: float, **data: Any) -> "Account":
        """The account with one more outgoing event (written with it, in the same transaction)."""
        event = new_event(self.user_id, self.seq + 1, event_type, now, **data)
        return replace(self, seq=self.seq + 1, events=self.events + (event,))

    def available(self, now: float) -> int:
        """What a new spend or hold may take: balance − open holds − what the expiry job will take."""
        return self.balance - self.held(now) - sum(amount for _lot, amount, _kept in self._expirations(now))

    # -- balance changes: each returns the account after and its ledger entry -------------
    def post(self, entry_id: str, entry_type: str, amount: int, refs: Mapping[str, Any],
             request_hash: str | None = None, *, now: float = 0.0, lot: LotSpec | None = None,
             from_lot: str | None = None, hold: str | None = None) -> tuple["Account", Entry]:
        """Apply one entry of ``amount`` (signed) under the rules of its type.

        ``lot`` describes the lot a credit creates (default: the entry type's source);
        ``from_lot`` is the lot a reversal takes from first; ``hold`` the open hold a spend captures.
        """
        kind = ENTRY_TYPES[entry_type]
        if amount == 0 or (kind.sign and (amount > 0) != (kind.sign > 0)):
            raise ValueError(f"{entry_type} amount {amount} has the wrong sign")
        holds = self.holds
        if entry_type == SPEND and hold is not None:
            if hold not in holds or -amount > int(holds[hold]["amount"]):
                raise ValueError(f"capture of {-amount} does not fit open hold {hold!r}")
            holds = {k: v for k, v in holds.items() if k != hold}
        elif entry_type == SPEND:
            if self.frozen:
                raise AccountFrozen(sorted(self.frozen_by))
            available = self.available(now)
            if available < -amount:
                raise InsufficientFunds(self.balance, -amount, available)
        elif entry_type == ADJUSTMENT and amount < 0 and self.available(now) + amount < 0:
            raise InsufficientFunds(self.balance, -amount, self.available(now))
        lots, moved = self._move_lots(entry_id, entry_type, amount, now, lot, from_lot, hold is not None)
        total, delta = total_delta(entry_type, amount)
        totals = self.totals()
        totals[total] += delta
        after = replace(self, balance=self.balance + amount, purchased=totals[PURCHASED], earned=totals[EARNED],
                        spent=totals[SPENT], expired=totals[EXPIRED], exists=True, holds=holds,
                        lots={k: v for k, v in {**self.lots, **lots}.items() if v.open},
                        changed_lots={**self.changed_lots, **lots})
        kind_of_event = (CREDITED if amount > 0 else REFUNDED if entry_type in REVERSAL_TYPES
                         else LOT_EXPIRED if entry_type == EXPIRY else DEBITED)
        after = after.emit(kind_of_event, now, entryId=entry_id, entryType=entry_type, amount=amount,
                           balanceBefore=self.balance, balanceAfter=after.balance,
                           **({"lotId": from_lot} if entry_type == EXPIRY else {}))
        if hold is not None:
            held = int(self.holds[hold]["amount"])
            after = after.emit(HOLD_CAPTURED, now, holdId=hold, amount=held, captured=-amount, released=held + amount,
                               entryId=entry_id, balanceAfter=after.balance)
        return after, Entry(entry_id, self.user_id, entry_type, amount, after.balance,
                            {**refs, "lots": moved} if moved else dict(refs), request_hash)

    def _move_lots(self, entry_id: str, entry_type: str, amount: int, now: float, spec: LotSpec | None,
                   from_lot: str | None, capture: bool) -> tuple[dict[str, Lot], dict[str, int]]:
        if amount > 0:  # a credit: a new lot, less the debt it repays
            spec = spec or LotSpec(_DEFAULT_SOURCE.get(entry_type, "purchase"))
            remaining = max(0, min(amount, self.balance + amount))
            created = new_lot(entry_id, self.user_id, spec, amount, remaining, now)
            return {entry_id: created}, ({entry_id: remaining} if remaining else {})
        live_only = entry_type == SPEND and not capture
        changed, taken, _debt = consume(self.lots, -amount, now, first=from_lot, include_expired=not live_only)
        return changed, taken

    # -- holds ----------------------------------------------------------------------------
    def place_hold(self, hold_id: str, amount: int, expires_at: float, now: float) -> "Account":
        if self.frozen:
            raise AccountFrozen(sorted(self.frozen_by))
        available = self.available(now)
        if available < amount:
            raise InsufficientFunds(self.balance, amount, available)
        placed = replace(self, holds={**self.holds, hold_id: {"amount": amount, "expiresAt": expires_at}}, exists=True)
        return placed.emit(HOLD_CREATED, now, holdId=hold_id, amount=amount, expiresAt=expires_at,
                           available=placed.available(now))

    def set_hold_expiry(self, hold_id: str, expires_at: float) -> "Account":
        return replace(self, holds={**self.holds, hold_id: {**self.holds[hold_id], "expiresAt": expires_at}})

    def drop_hold(self, hold_id: str, now: float = 0.0, why: str = "released") -> "Account":
        """The hold gone without a capture entry: ``released``, ``expired`` or ``captured`` (of 0)."""
        held = int((self.holds.get(hold_id) or {}).get("amount") or 0)
        dropped = replace(self, holds={k: v for k, v in self.holds.items() if k != hold_id})
        kind = {"released": HOLD_RELEASED, "expired": HOLD_EXPIRED, "captured": HOLD_CAPTURED}[why]
        return dropped.emit(kind, now, holdId=hold_id, amount=held, captured=0, released=held,
                            available=dropped.available(now))

    # -- expiry ---------------------------------------------------------------------------
    def _expirations(self, now: float) -> list[tuple[Lot, int, int]]:
        """(lot, tokens to expire, tokens its rollover keeps) for each expired lot, in spend order."""
        free = self.balance - self.held(now)  # expiry never takes what open holds need
        rolled: dict[str | None, int] = {}  # what this pass rolls over, per plan
        out = []
        for lot in sorted((x for x in self.lots.values() if not x.live(now) and x.open), key=spend_order):
            keep = max(0, rollover_keep(lot, self.lots.values()) - rolled.get(lot.plan_id, 0))
            take = max(0, min(lot.remaining - keep, free))
            free -= take
            if lot.remaining - take == keep and keep:
                rolled[lot.plan_id] = rolled.get(lot.plan_id, 0) + keep
            out.append((lot, take, keep))
        return out

    def expire(self, now: float) -> tuple["Account", list[Entry]]:
        """Expire what expired lots still hold (once: each entry is keyed by the lot's expired total)."""
        account, entries = self, []
        for lot, take, keep in self._expirations(now):
            if take:
                account, entry = account.post(expiry_entry_id(lot.id, lot.expired + take), EXPIRY, -take,
                                              {"lotId": lot.id, "source": lot.source, "expiresAt": lot.expires_at},
                                              now=now, from_lot=lot.id)
                entries.append(entry)
            current = replace(account.changed_lots.get(lot.id, lot), expired=lot.expired + take)
            if current.remaining and current.remaining == keep:  # what the cap keeps rolls over
                current = replace(current, expires_at=None, rolled_over=True)
            if current != lot:
                account = account._with_lot(current)
        return account, entries

    def _with_lot(self, lot: Lot) -> "Account":
        lots = {**self.lots, lot.id: lot} if lot.open else {k: v for k, v in self.lots.items() if k != lot.id}
        return replace(self, lots=lots, changed_lots={**self.changed_lots, lot.id: lot})

    def expired_holds(self, now: float) -> list[str]:
        return sorted(k for k, v in self.holds.items() if float(v["expiresAt"]) <= now)

    def with_lots(self, lots: list[Lot]) -> "Account":
        """The account with these lots added (the migration); only open ones stay on the account."""
        return replace(self, lots={**self.lots, **{lot.id: lot for lot in lots if lot.open}},
                       changed_lots={**self.changed_lots, **{lot.id: lot for lot in lots}})

    # -- disputes -------------------------------------------------------------------------
    def freeze(self, dispute_id: str, info: Mapping[str, Any], now: float = 0.0) -> "Account":
        frozen = replace(self, frozen_by={**self.frozen_by, dispute_id: dict(info)}, exists=True)
        return frozen if dispute_id in self.frozen_by else frozen.emit(FROZEN, now, disputeId=dispute_id)

    def unfreeze(self, dispute_id: str, now: float = 0.0) -> "Account":
        if dispute_id not in self.frozen_by:
            return self
        thawed = replace(self, frozen_by={k: v for k, v in self.frozen_by.items() if k != dispute_id})
        return thawed.emit(UNFROZEN, now, disputeId=dispute_id, frozen=thawed.frozen)

    # -- notices --------------------------------------------------------------------------
    def purchase_failed(self, payment_id: str, status: str, reason: str | None, now: float) -> "Account":
        return self.emit(PURCHASE_FAILED, now, paymentId=payment_id, status=status, reason=reason)

    def notify_expiring(self, now: float, horizon_seconds: float) -> "Account":
        """One ``lot.expiring`` per open lot that expires within the horizon (once per lot)."""
        account = self
        for lot in sorted(self.lots.values(), key=spend_order):
            if (lot.open and lot.live(now) and lot.expires_at is not None and not lot.expiring_notified
                    and lot.expires_at <= now + horizon_seconds):
                account = account._with_lot(replace(lot, expiring_notified=True)).emit(
                    LOT_EXPIRING, now, lotId=lot.id, source=lot.source, remaining=lot.remaining,
                    expiresAt=lot.expires_at)
        return account

    # -- the subscription mirror ----------------------------------------------------------
    def mirror_subscription(self, incoming: Mapping[str, Any]) -> tuple["Account", bool]:
        """Store ``incoming`` if the subscription rules let it replace what is stored."""
        if not mirror(self.subscription, incoming):
            return self, False
        return replace(self, subscription=dict(incoming), exists=True), True
