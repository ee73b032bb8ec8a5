"""Whose payment is this charge? tokenbank's, by its own records or by what Stripe says.

A refund or dispute names a PaymentIntent. If tokenbank credited (or parked a reversal
for) that PaymentIntent, its ``PaymentLink`` says whose it is. Otherwise Stripe is asked:
a package's PaymentIntent carries tokenbank's metadata (``userId``, ``packageId``) from
checkout; a plan invoice's carries none, so its invoice is looked up and the subscription's
metadata (``userId``, ``planId``) decides. Anything else — the same Stripe account selling
other things — is not tokenbank's: recorded as ignored, never retried, never alerted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core.domain.payment import PaymentLink
from core.domain.records import IGNORED, EventRef
from core.domain.stripe_objects import invoice_subscription, mapping, user_problem

log = logging.getLogger("tokenbank.reversals")


@dataclass(frozen=True)
class Owner:
    user_id: str


def owner_or_ignore(deps, ref: EventRef, payment_intent: str | None) -> Owner | None:
    """The charge's owner; if it is not tokenbank's, the event is recorded ``ignored`` and None."""
    owner = owner_of(deps, payment_intent) if payment_intent else None
    if owner is None:
        deps.uow.run(lambda tx: tx.put(ref.record(IGNORED, "not_tokenbank_charge", paymentIntentId=payment_intent)))
        log.info("%s of a charge tokenbank did not sell: ignored", ref.event_type,
                 extra={"event_id": ref.event_id, "payment_intent": payment_intent})
    return owner


def owner_of(deps, payment_intent: str) -> Owner | None:
    link = deps.uow.run(lambda tx: tx.get(PaymentLink, payment_intent))
    if link is not None and link.user_id:
        return Owner(link.user_id)
    intent = deps.payments.payment_intent(payment_intent)
    if intent is None:
        return None
    metadata = mapping(intent.get("metadata"))
    if not user_problem(metadata.get("userId")) and deps.catalog.get(metadata.get("packageId")) is not None:
        return Owner(metadata["userId"])
    invoice = deps.payments.invoice_for_payment_intent(payment_intent)
    if invoice is None:
        return None
    _, sub_metadata = invoice_subscription(invoice)
    if not user_problem(sub_metadata.get("userId")) and deps.catalog.plan(sub_metadata.get("planId")) is not None:
        return Owner(sub_metadata["userId"])
    return None
