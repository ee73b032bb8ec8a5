"""Refunds and disputes: taking back what a purchase credited, exactly once.

Both map back to the purchase through the PaymentIntent (tokenbank puts the user and
package on it at checkout, and stores its id on the purchase record).

- ``charge.refunded``: ``amount_refunded`` is cumulative, so each event debits only what
  its cumulative amount adds, in proportion to the purchase's tokens; the entry id carries
  the cumulative amount, so redeliveries and out-of-order partial refunds never debit twice.
- ``charge.dispute.created`` freezes the account's spending; ``charge.dispute.closed`` lifts
  it when ``won``, and when ``lost`` first reverses the purchase's remaining tokens.
- A balance taken below zero is recorded as debt (spending is impossible until it is
  positive again) and raises an alert.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from core.deps import Deps
from core.errors import MalformedEvent, TransientError
from core.ids import is_valid_doc_id
from core.store import Alert, ReversalRequest, ReversalResult
from core.stripe_events import DISPUTE_CREATED, StripeEvent

log = logging.getLogger("tokenbank.reversals")


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and is_valid_doc_id(value) else None


def _purchase_for(deps: Deps, payment_intent: str | None) -> tuple[str, Mapping[str, Any]]:
    if payment_intent is None:
        raise MalformedEvent("no payment_intent: cannot map this charge to a purchase")
    found = deps.store.find_purchase_by_payment_intent(payment_intent)
    if found is None:
        # The credit may still be on its way (events arrive out of order): retry, then dead-letter.
        raise TransientError(f"no fulfilled purchase for payment intent {payment_intent} yet")
    return found


def _debt_alert(deps: Deps, result: ReversalResult, cause: str) -> None:
    if result.debt > 0 and result.entry_id:
        deps.store.add_alert(Alert(f"debt_{result.entry_id}", "negative_balance", result.user_id,
                                   {"debt": result.debt, "balanceAfter": result.balance_after, "cause": cause,
                                    "entryId": result.entry_id}))
        log.warning("balance negative after %s: debt recorded, spending blocked", cause,
                    extra={"user_id": result.user_id, "debt": result.debt})


def handle_refund(deps: Deps, event: StripeEvent) -> dict:
    charge = event.object
    amount_refunded = charge.get("amount_refunded")
    if isinstance(amount_refunded, bool) or not isinstance(amount_refunded, int) or amount_refunded < 0:
        raise MalformedEvent("charge.amount_refunded is not a non-negative integer")
    session_id, _ = _purchase_for(deps, _id(charge.get("payment_intent")))
    result = deps.store.reverse_purchase(ReversalRequest(
        session_id, f"refund_{session_id}_{amount_refunded}", "refund", amount_refunded,
        {"stripeEventId": event.id, "chargeId": _id(charge.get("id")), "refundedCents": amount_refunded,
         "paymentIntentId": _id(charge.get("payment_intent"))}))
    _debt_alert(deps, result, "refund")
    log.info("refund applied", extra={"event_id": event.id, "session_id": session_id, "user_id": result.user_id,
                                      "amount": result.amount})
    return {"status": "refunded" if result.amount else "refund_nothing_to_debit", "session_id": session_id,
            "user_id": result.user_id, "amount": result.amount}


def _dispute_parts(event: StripeEvent) -> tuple[str, str, dict]:
    dispute = event.object
    dispute_id = _id(dispute.get("id"))
    if dispute_id is None:
        raise MalformedEvent("dispute has no valid id")
    info = {"chargeId": _id(dispute.get("charge")), "paymentIntentId": _id(dispute.get("payment_intent")),
            "amount": dispute.get("amount"), "reason": dispute.get("reason"), "status": dispute.get("status"),
            "stripeEventId": event.id}
    return dispute_id, dispute.get("status") or "", info


def handle_dispute(deps: Deps, event: StripeEvent) -> dict:
    dispute_id, status, info = _dispute_parts(event)
    session_id, purchase = _purchase_for(deps, info["paymentIntentId"])
    user_id = purchase["userId"]
    info["sessionId"] = session_id
    if event.type == DISPUTE_CREATED:
        changed = deps.store.apply_dispute(dispute_id, user_id, True, info)
        if changed:
            deps.store.add_alert(Alert(f"dispute_{dispute_id}", "dispute_opened", user_id,
                                       {k: v for k, v in info.items() if v is not None}))
        return {"status": "frozen" if changed else "dispute_already_known", "user_id": user_id}
    # charge.dispute.closed
    if status == "lost":
        result = deps.store.reverse_purchase(ReversalRequest(
            session_id, f"dispute_{dispute_id}", "dispute_reversal", None,
            {"stripeEventId": event.id, "disputeId": dispute_id, "chargeId": info["chargeId"]},
            unfreeze=dispute_id))
        _debt_alert(deps, result, "lost dispute")
    deps.store.apply_dispute(dispute_id, user_id, False, info)
    log.info("dispute closed: %s", status, extra={"event_id": event.id, "user_id": user_id})
    return {"status": f"dispute_{status or 'closed'}", "user_id": user_id}
