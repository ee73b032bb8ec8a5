"""Disputes: ``created`` freezes the account's spending; ``closed`` lifts the freeze, after
taking back what remains of the disputed payment when the dispute was lost.

A dispute whose payment is not credited yet still freezes (its owner is known from Stripe);
a loss is parked on the PaymentIntent's link and applied by the credit's own transaction.
A dispute already known is never reopened by a late ``created``. Disputes of charges that
are not tokenbank's are recorded as ignored.
"""
from __future__ import annotations

import logging

from core.domain.account import Account
from core.domain.dispute import LOST, Dispute, close_dispute, is_closing, open_dispute
from core.domain.errors import MalformedEvent
from core.domain.payment import Payment, PaymentLink
from core.domain.records import PROCESSED, Alert, EventRef
from core.domain.stripe_events import DISPUTE_CLOSED, DISPUTE_CREATED, StripeEvent
from core.domain.stripe_objects import int_or_none, ref_id, text
from core.handlers.ownership import owner_or_ignore
from core.handlers.debt import debt_alert, log_debt
from core.handlers.payments import locked
from core.handlers.registry import handles
from core.outcome import Outcome

log = logging.getLogger("tokenbank.reversals")


@handles(DISPUTE_CREATED, DISPUTE_CLOSED)
def dispute_event(deps, event: StripeEvent) -> Outcome:
    obj = event.object
    dispute_id = ref_id(obj.get("id"))
    if dispute_id is None:
        raise MalformedEvent("dispute has no valid id")
    status = text(obj.get("status")) or ""
    pi = ref_id(obj.get("payment_intent"))
    ref = EventRef(event.id, event.type)
    owner = owner_or_ignore(deps, ref, pi)
    if owner is None:
        return Outcome("ignored", reason="not_tokenbank_charge")
    info = {"chargeId": ref_id(obj.get("charge")), "amount": int_or_none(obj.get("amount")),
            "reason": text(obj.get("reason")), "stripeEventId": event.id, "since": int(deps.clock())}
    dispute = Dispute(dispute_id, owner.user_id, pi, status, info=info)
    closing = event.type == DISPUTE_CLOSED or is_closing(status)

    def work(tx):
        existing, account, link = tx.get_all((Dispute, dispute_id), (Account, owner.user_id), (PaymentLink, pi))
        account = account or Account(owner.user_id)
        if not closing:
            opened = open_dispute(existing, dispute)
            if opened is None:
                return _again(tx, ref, existing, "dispute_already_known", owner.user_id)
            tx.put(opened)
            tx.put(account.freeze(dispute_id, info, deps.clock()))
            tx.put(Alert(f"dispute_{dispute_id}", "dispute_opened", owner.user_id,
                         {k: v for k, v in {**info, "paymentIntentId": pi, "status": status}.items() if v is not None}))
            return _done(tx, ref, "frozen", owner.user_id)
        closed = close_dispute(existing, dispute)
        if closed is None:
            return _again(tx, ref, existing, "dispute_already_closed", owner.user_id)
        tx.put(closed)
        account = account.unfreeze(dispute_id, deps.clock())
        outcome = f"dispute_{status or 'closed'}"
        if status == LOST:
            refs = {"stripeEventId": event.id, "chargeId": info["chargeId"]}
            if link is not None and link.payment_id:
                payment = tx.get(Payment, link.payment_id)
                payment, account, entry = payment.reverse_for_dispute(account, dispute_id, refs, deps.clock())
                tx.put(payment)
                balance_after[0] = account.balance
                if entry is not None:
                    tx.add(entry)
                    if account.debt:
                        tx.put(debt_alert(account.user_id, entry.id, account.balance, "lost dispute"))
            else:
                tx.put((link or PaymentLink(pi)).park_lost_dispute(owner.user_id, dispute_id, refs))
                outcome = "dispute_lost_parked"
        tx.put(account)
        return _done(tx, ref, outcome, owner.user_id)

    balance_after = [0]
    with locked(deps, owner.user_id):
        outcome = deps.uow.run(work)
    log_debt(owner.user_id, balance_after[0], "lost dispute")
    log.info("dispute %s", outcome, extra={"event_id": event.id, "user_id": owner.user_id, "dispute_id": dispute_id})
    return Outcome(outcome, None, owner.user_id)


def _again(tx, ref: EventRef, existing: Dispute, outcome: str, user_id: str) -> str:
    """A dispute already in this state: the event that put it there keeps its own record."""
    if existing.info.get("stripeEventId") == ref.event_id:
        return outcome
    return _done(tx, ref, outcome, user_id)


def _done(tx, ref: EventRef, outcome: str, user_id: str) -> str:
    tx.put(ref.record(PROCESSED, outcome, userId=user_id))
    return outcome
