"""Crediting a payment and changing its status: the two writes every purchase path shares.

``credit_payment`` is the one function that credits money paid — a package's Checkout
Session or a plan's invoice — whoever asks (webhook, success page, reconciliation,
replay). It is keyed on the payment, so any number of calls credit it once; it applies in
the same transaction every reversal parked for the payment's PaymentIntent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from core.domain.account import Account
from core.domain.ledger import REVERSAL_TYPES
from core.domain.lots import LotSpec
from core.domain.ids import is_valid_doc_id
from core.domain.payment import FAILED, REJECTED as REJECTED_PAYMENT, Payment, PaymentLink, credit
from core.domain.records import PROCESSED, REJECTED, Alert, EventRef
from core.handlers.debt import debt_alert, log_debt

log = logging.getLogger("tokenbank.payments")


@dataclass(frozen=True)
class Credited:
    credited: bool  # False: the payment was already fulfilled, nothing changed
    user_id: str
    balance_after: int | None
    attempts: int
    reversed_tokens: int = 0


def locked(deps, user_id: str):
    """Queue one user's money changes on a short lock (the transaction alone keeps them
    correct if the lock is lost; the lock only spares Firestore the contention)."""
    return deps.lock(user_id)


def credit_payment(deps, payment: Payment, entry_type: str, ref: EventRef, record: dict | None = None,
                   entry_refs: dict | None = None, lot: LotSpec | None = None) -> Credited:
    """Credit ``payment`` (status ignored; its user, tokens and references are) exactly once."""
    user_id = payment.user_id
    pi = payment.payment_intent

    def work(tx) -> Credited:
        wanted = [(Payment, payment.id), (Account, user_id)] + ([(PaymentLink, pi)] if pi else [])
        existing, account, *rest = tx.get_all(*wanted)
        link = rest[0] if rest else None
        event = {"sessionId" if entry_type == "purchase" else "invoiceId": payment.id, **(record or {})}
        if existing is not None and existing.fulfilled:
            if (existing.info.get("fulfilledBy") or {}).get("eventId") != ref.event_id:
                _record(tx, ref, "already_fulfilled", existing.user_id, event)  # (the crediting event's record stays)
            return Credited(False, existing.user_id, None, tx.attempt)
        base = replace(payment, info={**(existing.info if existing else {}), **payment.info,
                                      "fulfilledBy": {"eventId": ref.event_id, "eventType": ref.event_type,
                                                      "source": ref.source},
                                      "creditAttempts": tx.attempt})
        if pi and link is None:
            link = PaymentLink(pi)
        paid, account_after, entries, link_after = credit(base, account or Account(user_id), entry_type,
                                                          {**ref.refs(), **(entry_refs or {})}, link,
                                                          deps.clock(), lot)
        tx.put(paid)
        tx.put(account_after)
        for entry in entries:
            tx.add(entry)
        if link_after is not None:
            tx.put(link_after)
        reversed_tokens = -sum(e.amount for e in entries if e.type in REVERSAL_TYPES)
        if reversed_tokens and account_after.debt:
            tx.put(debt_alert(user_id, entries[-1].id, account_after.balance, "reversal parked before the credit"))
        _record(tx, ref, "credited", user_id, event)
        return Credited(True, user_id, account_after.balance, tx.attempt, reversed_tokens)

    with locked(deps, user_id):
        result = deps.uow.run(work)
    if result.reversed_tokens and result.balance_after is not None:
        log_debt(user_id, result.balance_after, "a reversal parked before its credit")
    return result


def change_status(deps, payment: Payment, status: str, ref: EventRef, alert: Alert | None = None,
                  record: dict | None = None) -> bool:
    """Move the payment to ``status`` if its current status allows it; returns whether it did."""

    def work(tx) -> bool:
        current = tx.get(Payment, payment.id) or payment
        changed = current.change_status(
            status, reason=payment.reason, detail=payment.detail,
            user_id=payment.user_id or current.user_id, item_id=payment.item_id or current.item_id,
            info={**current.info, "lastEvent": {"eventId": ref.event_id, "eventType": ref.event_type,
                                                "source": ref.source}})
        if changed is not None:
            tx.put(changed)
            if alert is not None:
                tx.put(alert)
            if status in (FAILED, REJECTED_PAYMENT) and changed.user_id and is_valid_doc_id(changed.user_id):
                account = tx.get(Account, changed.user_id)  # purchase.failed, in order; no account: none made
                if account is not None:
                    tx.put(account.purchase_failed(changed.id, status, changed.reason, deps.clock()))
        outcome = status if changed is not None else f"{status}_skipped_purchase_is_{current.status}"
        _record(tx, ref, outcome, payment.user_id, {"sessionId": payment.id, **(record or {})},
                REJECTED if status == REJECTED_PAYMENT and changed is not None else PROCESSED)
        return changed is not None

    return deps.uow.run(work)


def _record(tx, ref: EventRef, outcome: str, user_id: str | None, fields: dict, status: str = PROCESSED) -> None:
    record = ref.record(status, outcome, userId=user_id, **fields)
    if record is not None:
        tx.put(record)
