"""Payments: what a customer paid for, credited once and reversible in proportion.

A payment is a package purchase (keyed by its Checkout Session) or a plan invoice (keyed
by the invoice). Both credit once (``credit``), then refunds and lost disputes take back:

- a refund with Stripe's cumulative ``amount_refunded`` debits
  ``floor(tokens * refunded / paid)`` minus what refunds already took, never more than
  what remains; its entry id carries the cumulative amount, so redeliveries and
  out-of-order partial refunds never debit twice;
- a lost dispute takes back whatever remains.

Both take from the lot the payment bought first (at most what remains of it), then from the
rest of the balance in spend order, then below zero (debt).

A reversal can overtake the credit it reverses. It is then parked on the payment's
``PaymentLink`` (keyed by the PaymentIntent, which both sides know) and applied inside the
transaction that credits the payment, whenever that happens — no retry budget to outlive.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from core.domain.account import Account
from core.domain.ledger import DISPUTE_REVERSAL, REFUND, Entry, dispute_entry_id, refund_entry_id
from core.domain.lots import PURCHASE_LOT, LotSpec

PACKAGE, PLAN_INVOICE = "package", "plan_invoice"
OPEN, PENDING, FULFILLED, REJECTED, FAILED, EXPIRED = "open", "pending", "fulfilled", "rejected", "failed", "expired"
STATUSES = (OPEN, PENDING, FULFILLED, REJECTED, FAILED, EXPIRED)
# Each status and the ones it may replace; nothing replaces FULFILLED.
REPLACEABLE_BY = {
    OPEN: (None,),
    PENDING: (None, OPEN, PENDING),
    FAILED: (None, OPEN, PENDING, FAILED),
    EXPIRED: (None, OPEN, PENDING, EXPIRED),
    REJECTED: (None, OPEN, PENDING, FAILED, EXPIRED, REJECTED),
}


@dataclass(frozen=True)
class Payment:
    id: str
    kind: str = PACKAGE
    user_id: str | None = None
    status: str | None = None
    item_id: str | None = None  # the package or plan
    tokens: int = 0
    amount_paid: int = 0
    currency: str | None = None
    payment_intent: str | None = None
    entry_id: str | None = None
    refunded_cents: int = 0
    refunded_tokens: int = 0
    reversed_tokens: int = 0
    reason: str | None = None
    detail: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)  # references: event, subscription, expiry...

    @property
    def key(self) -> str:
        return self.id

    @property
    def fulfilled(self) -> bool:
        return self.status == FULFILLED

    @property
    def remaining(self) -> int:
        return self.tokens - self.refunded_tokens - self.reversed_tokens

    def change_status(self, status: str, **fields: Any) -> "Payment | None":
        """The payment in ``status``, or None if its current status does not allow it."""
        if self.status not in REPLACEABLE_BY[status]:
            return None
        return replace(self, status=status, **fields)

    # -- reversals --------------------------------------------------------------------------
    def refund(self, account: Account, refunded_cents: int, refs: Mapping[str, Any], now: float = 0.0
               ) -> tuple["Payment", Account, Entry | None]:
        cents = max(self.refunded_cents, refunded_cents)
        paid = self.amount_paid
        target = self.tokens if paid <= 0 or cents >= paid else self.tokens * cents // paid
        debit = max(0, min(target - self.refunded_tokens, self.remaining))
        after = replace(self, refunded_cents=cents, refunded_tokens=self.refunded_tokens + debit)
        if debit == 0:
            return after, account, None
        account, entry = account.post(refund_entry_id(self.id, refunded_cents), REFUND, -debit,
                                      {**refs, **self._refs()}, now=now, from_lot=self.entry_id)
        return after, account, entry

    def reverse_for_dispute(self, account: Account, dispute_id: str, refs: Mapping[str, Any], now: float = 0.0
                            ) -> tuple["Payment", Account, Entry | None]:
        debit = max(0, self.remaining)
        if debit == 0:
            return self, account, None
        after = replace(self, reversed_tokens=self.reversed_tokens + debit)
        account, entry = account.post(dispute_entry_id(dispute_id), DISPUTE_REVERSAL, -debit,
                                      {**refs, "disputeId": dispute_id, **self._refs()}, now=now,
                                      from_lot=self.entry_id)
        return after, account, entry

    def _refs(self) -> dict[str, Any]:
        key = "checkoutSessionId" if self.kind == PACKAGE else "invoiceId"
        item = "packageId" if self.kind == PACKAGE else "planId"
        return {key: self.id, item: self.item_id, "paymentIntentId": self.payment_intent}


@dataclass(frozen=True)
class PaymentLink:
    """What tokenbank knows about one PaymentIntent: its payment, and reversals still waiting.

    ``parked_refund_cents`` is the largest cumulative refund seen before the credit;
    ``parked_disputes`` maps each lost dispute waiting for the credit to its references.
    """
    payment_intent: str
    payment_id: str | None = None
    user_id: str | None = None
    parked_refund_cents: int = 0
    parked_refund_refs: Mapping[str, Any] = field(default_factory=dict)
    parked_disputes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.payment_intent

    @property
    def parked(self) -> bool:
        return bool(self.parked_refund_cents or self.parked_disputes)

    def park_refund(self, user_id: str | None, refunded_cents: int, refs: Mapping[str, Any]) -> "PaymentLink":
        if refunded_cents <= self.parked_refund_cents:
            return self
        return replace(self, user_id=self.user_id or user_id, parked_refund_cents=refunded_cents,
                       parked_refund_refs=dict(refs))

    def park_lost_dispute(self, user_id: str | None, dispute_id: str, refs: Mapping[str, Any]) -> "PaymentLink":
        return replace(self, user_id=self.user_id or user_id,
                       parked_disputes={**self.parked_disputes, dispute_id: dict(refs)})


def credit(payment: Payment, account: Account, entry_type: str, refs: Mapping[str, Any],
           link: PaymentLink | None, now: float = 0.0, lot: LotSpec | None = None
           ) -> tuple[Payment, Account, list[Entry], PaymentLink | None]:
    """Credit a payment once (its lot: ``lot``, or a purchase lot with the payment's cost),
    then apply every reversal parked for it, in one step."""
    from core.domain.ledger import payment_entry_id

    entry_id = payment_entry_id(entry_type, payment.id)
    lot = lot or LotSpec(PURCHASE_LOT)
    lot = replace(lot, cost_cents=payment.amount_paid, currency=payment.currency, payment_id=payment.id)
    account, entry = account.post(entry_id, entry_type, payment.tokens,
                                  {**refs, **payment._refs(), "amountPaid": payment.amount_paid,
                                   "currency": payment.currency}, now=now, lot=lot)
    payment = replace(payment, status=FULFILLED, entry_id=entry_id, user_id=account.user_id, reason=None,
                      detail=None)
    entries = [entry]
    if link is None:
        return payment, account, entries, None
    if link.parked_refund_cents:
        payment, account, refund = payment.refund(account, link.parked_refund_cents, link.parked_refund_refs, now)
        entries += [refund] if refund else []
    for dispute_id, dispute_refs in sorted(link.parked_disputes.items()):
        payment, account, reversal = payment.reverse_for_dispute(account, dispute_id, dispute_refs, now)
        entries += [reversal] if reversal else []
    link = replace(link, payment_id=payment.id, user_id=account.user_id, parked_refund_cents=0,
                   parked_refund_refs={}, parked_disputes={})
    return payment, account, entries, link
