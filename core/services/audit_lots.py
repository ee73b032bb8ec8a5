"""The audit's checks on lots and holds, per user (core/services/audit.py runs them).

- the account's lots are the open lot documents, and balance = Σ lots.remaining − debt
  (in debt, no lot has anything left);
- each lot's remaining is what the entries moved into and out of it (``lots`` on each entry),
  plus, for a lot made by the migration, what it was given then; never below zero or over
  its amount;
- the account's holds are exactly the open hold documents, with the same amounts;
- available = balance − open holds ≥ 0, unless in debt or a reversal took tokens a hold
  counted on (a refund or lost dispute always applies);
- a hold ends once: captured (captured + released = amount, and exactly the one ``spend``
  entry of its capture when it captured anything), released or expired (nothing captured);
  no two spend entries capture one hold;
- a lot past its expiry by more than ``EXPIRY_GRACE_SECONDS`` has nothing left, unless open
  holds still need it or its rollover kept it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from core.domain.holds import CAPTURED, OPEN
from core.domain.ledger import REVERSAL_TYPES, SPEND

EXPIRY_GRACE_SECONDS = 120


def check_lots_and_holds(user_id: str, user: Mapping[str, Any], entries: list[Mapping[str, Any]],
                         lots: Iterable[Any], holds: Iterable[Any], now: float, violation) -> None:
    lots, holds = list(lots), list(holds)
    balance, debt = int(user.get("tokenBalance") or 0), int(user.get("debt") or 0)
    moved: dict[str, int] = {}
    captures: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        for lot_id, delta in (entry.get("lots") or {}).items():
            moved[lot_id] = moved.get(lot_id, 0) + int(delta)
        if entry.get("type") == SPEND and entry.get("holdId"):
            captures.setdefault(entry["holdId"], []).append(entry)
    if not lots and not holds and not user.get("lots") and not user.get("holds"):
        return  # an account from before lots (the migration gives it its lots)
    remaining_sum = 0
    for lot in lots:
        base = lot.amount - lot.migrated_consumed if lot.migrated else 0
        expected = base + moved.get(lot.id, 0)
        if lot.remaining != expected:
            violation("lot_remaining_equals_entries", expected, lot.remaining, lot.id)
        if not 0 <= lot.remaining <= lot.amount:
            violation("lot_remaining_within_amount", f"0..{lot.amount}", lot.remaining, lot.id)
        remaining_sum += lot.remaining
    if sorted(user.get("lots") or {}) != sorted(lot.id for lot in lots if lot.remaining > 0):
        violation("account_lots_are_open_lots", sorted(lot.id for lot in lots if lot.remaining > 0),
                  sorted(user.get("lots") or {}))
    if balance + debt != remaining_sum:
        violation("balance_equals_lots", remaining_sum - debt, balance)
    open_holds = {h.id: h for h in holds if h.status == OPEN}
    account_holds = {k: int(v.get("amount") or 0) for k, v in (user.get("holds") or {}).items()}
    if account_holds != {k: h.amount for k, h in open_holds.items()}:
        violation("account_holds_are_open_holds", sorted(open_holds), sorted(account_holds))
    held = sum(account_holds.values())
    reversed_ = any(e.get("type") in REVERSAL_TYPES for e in entries)
    if balance - held < 0 and not debt and not reversed_:
        violation("available_not_negative", f">= {held}", balance)
    for hold in holds:
        taken = captures.get(hold.id, [])
        if hold.status == CAPTURED:
            if hold.captured + hold.released != hold.amount or not 0 <= hold.captured <= hold.amount:
                violation("captured_hold_within_amount", hold.amount, f"{hold.captured}+{hold.released}", hold.id)
            if len(taken) != (1 if hold.captured else 0) or sum(-int(e["amount"]) for e in taken) != hold.captured:
                violation("capture_has_its_entry", hold.captured, [e.get("amount") for e in taken], hold.id)
        elif taken:
            violation("uncaptured_hold_has_no_entry", 0, len(taken), hold.id)
    open_held = bool(open_holds)
    for lot in lots:
        if (lot.remaining and lot.expires_at is not None and lot.expires_at + EXPIRY_GRACE_SECONDS < now
                and not lot.rolled_over and not open_held):
            violation("expired_lot_is_empty", 0, lot.remaining, lot.id)
