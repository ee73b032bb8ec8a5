"""``charge.refunded``: take back, in proportion, what the refunded payment credited.

Stripe's ``amount_refunded`` is cumulative: each event debits only what its cumulative
amount adds (``Payment.refund``). A refund of a payment not credited yet is parked on the
PaymentIntent's link and applied by the credit's own transaction. A charge that is not
tokenbank's is recorded as ignored.
"""
from __future__ import annotations

import logging

from core.domain.account import Account
from core.domain.errors import MalformedEvent
from core.domain.payment import Payment, PaymentLink
from core.domain.records import PROCESSED, EventRef
from core.domain.stripe_events import CHARGE_REFUNDED, StripeEvent
from core.domain.stripe_objects import int_or_none, ref_id
from core.handlers.ownership import owner_or_ignore
from core.handlers.debt import debt_alert, log_debt
from core.handlers.payments import locked
from core.handlers.registry import handles
from core.outcome import Outcome

log = logging.getLogger("tokenbank.reversals")


@handles(CHARGE_REFUNDED)
def charge_refunded(deps, event: StripeEvent) -> Outcome:
    charge = event.object
    cents = int_or_none(charge.get("amount_refunded"))
    if cents is None or cents < 0:
        raise MalformedEvent("charge.amount_refunded is not a non-negative integer")
    pi = ref_id(charge.get("payment_intent"))
    ref = EventRef(event.id, event.type)
    owner = owner_or_ignore(deps, ref, pi)
    if owner is None:
        return Outcome("ignored", reason="not_tokenbank_charge")
    refs = {"stripeEventId": event.id, "chargeId": ref_id(charge.get("id")), "refundedCents": cents}

    def work(tx):
        link = tx.get(PaymentLink, pi) or PaymentLink(pi, user_id=owner.user_id)
        if not link.payment_id:
            tx.put(link.park_refund(owner.user_id, cents, refs))
            tx.put(ref.record(PROCESSED, "parked", userId=owner.user_id, paymentIntentId=pi))
            return "parked", 0, None, 0
        payment, account = tx.get_all((Payment, link.payment_id), (Account, link.user_id))
        payment, account, entry = payment.refund(account or Account(link.user_id), cents, refs, deps.clock())
        tx.put(payment)
        if entry is not None:
            tx.put(account)
            tx.add(entry)
            if account.debt:
                tx.put(debt_alert(account.user_id, entry.id, account.balance, "refund"))
        outcome = "refunded" if entry else "refund_nothing_to_debit"
        tx.put(ref.record(PROCESSED, outcome, userId=link.user_id, paymentId=payment.id, paymentIntentId=pi))
        return outcome, entry.amount if entry else 0, payment.id, account.balance

    with locked(deps, owner.user_id):
        outcome, amount, payment_id, balance_after = deps.uow.run(work)
    if amount:
        log_debt(owner.user_id, balance_after, "refund")
    log.info("refund %s", outcome, extra={"event_id": event.id, "user_id": owner.user_id, "amount": amount,
                                         "payment_id": payment_id})
    return Outcome(outcome, payment_id, owner.user_id)
