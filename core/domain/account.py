"""An account: one user's balance, totals, debt, freezes and mirrored subscription.

Rules:
- a credit (purchase, plan allowance, grant, positive adjustment) always applies; when the
  balance is negative it repays the debt first, simply by adding to the balance;
- a spend needs an unfrozen account and a balance (less what open holds keep) that covers it;
- a negative adjustment may not take the balance below zero;
- a reversal (refund, lost dispute) always applies, and a balance below zero is debt;
- ``debt`` is always ``max(0, -balance)``; each total moves with its entry type (ledger).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from core.domain.errors import AccountFrozen, InsufficientFunds
from core.domain.ledger import ADJUSTMENT, ENTRY_TYPES, PURCHASED, EARNED, SPENT, SPEND, Entry, total_delta
from core.domain.subscription import mirror


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

    @property
    def key(self) -> str:
        return self.user_id

    @property
    def debt(self) -> int:
        return max(0, -self.balance)

    @property
    def frozen(self) -> bool:
        return bool(self.frozen_by)

    def totals(self) -> dict[str, int]:
        return {PURCHASED: self.purchased, EARNED: self.earned, SPENT: self.spent}

    # -- balance changes: each returns the account after and its ledger entry -------------
    def post(self, entry_id: str, entry_type: str, amount: int, refs: Mapping[str, Any],
             request_hash: str | None = None, held: int = 0) -> tuple["Account", Entry]:
        """Apply one entry of ``amount`` (signed) under the rules of its type."""
        kind = ENTRY_TYPES[entry_type]
        if amount == 0 or (kind.sign and (amount > 0) != (kind.sign > 0)):
            raise ValueError(f"{entry_type} amount {amount} has the wrong sign")
        if entry_type == SPEND:
            if self.frozen:
                raise AccountFrozen(sorted(self.frozen_by))
            available = self.balance - held
            if available < -amount:
                raise InsufficientFunds(self.balance, -amount, available)
        elif entry_type == ADJUSTMENT and amount < 0 and self.balance + amount < 0:
            raise InsufficientFunds(self.balance, -amount)
        total, delta = total_delta(entry_type, amount)
        totals = self.totals()
        totals[total] += delta
        after = replace(self, balance=self.balance + amount, purchased=totals[PURCHASED],
                        earned=totals[EARNED], spent=totals[SPENT], exists=True)
        return after, Entry(entry_id, self.user_id, entry_type, amount, after.balance, dict(refs), request_hash)

    # -- disputes -------------------------------------------------------------------------
    def freeze(self, dispute_id: str, info: Mapping[str, Any]) -> "Account":
        return replace(self, frozen_by={**self.frozen_by, dispute_id: dict(info)}, exists=True)

    def unfreeze(self, dispute_id: str) -> "Account":
        return replace(self, frozen_by={k: v for k, v in self.frozen_by.items() if k != dispute_id})

    # -- the subscription mirror ----------------------------------------------------------
    def mirror_subscription(self, incoming: Mapping[str, Any]) -> tuple["Account", bool]:
        """Store ``incoming`` if the subscription rules let it replace what is stored."""
        if not mirror(self.subscription, incoming):
            return self, False
        return replace(self, subscription=dict(incoming), exists=True), True
