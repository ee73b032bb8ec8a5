"""Invoices: drafts (a subscription's, or one-off invoice items'), finalization (number,
PaymentIntent, `invoice_payment` record), payment attempts, and what a payment's outcome does
to the invoice and its subscription.

Functions that build up a change take `evs`, a list of (event type, snapshot[, previous
attributes]) the caller emits in order once the whole change is known (`payments.emit_all`):
so an event can say what the object was at that step (a draft in invoice.created, open in
invoice.finalized) and still go out in Stripe's order. Every function here expects the caller
to hold `sb.store.lock`.
"""

from __future__ import annotations

import copy

from . import billing_objects as bo
from . import cards, objects, payments
from .errors import StripeError, invalid_param
from .events import Sandbox

RETRY_AFTER_SECONDS = 3 * 86400  # the next automatic attempt after a renewal fails (Smart Retries' first)


def snap(obj: dict) -> dict:
    return copy.deepcopy(obj)


def payment_of(sb: Sandbox, inv: dict) -> dict | None:
    return sb.store.get(inv.get("_payment"), "invoice_payment")


def payment_intent_of(sb: Sandbox, inv: dict) -> dict | None:
    ip = payment_of(sb, inv)
    return sb.store.get(ip["payment"]["payment_intent"], "payment_intent") if ip else None


def subscription_of(sb: Sandbox, inv: dict) -> dict | None:
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    return sb.store.get(details.get("subscription"), "subscription")


# --- drafts ------------------------------------------------------------------------

def subscription_invoice(sb: Sandbox, sub: dict, billing_reason: str, period_start: int, period_end: int,
                         evs: list) -> dict:
    """The subscription's draft invoice for its current period (one line per item)."""
    cus = sb.store.get(sub["customer"], "customer")
    inv = bo.invoice(sb.store.now(), cus, currency=sub["currency"], billing_reason=billing_reason,
                     period_start=period_start, period_end=period_end, subscription=sub)
    lines = []
    for item in sub["items"]["data"]:
        product = sb.store.get(item["price"]["product"], "product")
        lines.append(bo.subscription_line(inv, sub, item, product["name"] if product else ""))
    bo.add_lines(inv, lines)
    sb.store.add(inv)
    sub["latest_invoice"] = inv["id"]
    evs.append(("invoice.created", snap(inv)))
    return inv


def pending_items(sb: Sandbox, customer_id: str, subscription_id: str | None) -> list[dict]:
    """The customer's invoice items on no invoice yet (for that subscription, or for none), oldest first."""
    def sub_of(ii):
        return ii["parent"]["subscription_details"]["subscription"] if ii["parent"] else None
    return [ii for ii in reversed(sb.store.newest_first("invoiceitem"))
            if ii["customer"] == customer_id and ii["invoice"] is None and sub_of(ii) == subscription_id]


def add_items(inv: dict, items: list[dict]) -> None:
    if inv["status"] != "draft":
        raise invalid_param("invoice", f"You can only add invoice items to draft invoices (this one is {inv['status']}).")
    for ii in items:
        if ii["currency"] != inv["currency"]:
            raise invalid_param("currency", f"The invoice item's currency ({ii['currency']}) must match the "
                                f"invoice's ({inv['currency']}).")
        ii["invoice"] = inv["id"]
    bo.add_lines(inv, [bo.item_line(inv, ii) for ii in items])


# --- finalization and payment ------------------------------------------------------

def finalize(sb: Sandbox, inv: dict, evs: list, pi: dict | None = None, description: str | None = None) -> None:
    """draft -> open: a number, and for an amount due its PaymentIntent (`pi`: one that exists,
    e.g. Checkout's) and `invoice_payment`. Nothing due: paid at once."""
    if inv["status"] != "draft":
        raise StripeError(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                          code="invoice_not_editable")
    now = sb.store.now()
    cus = sb.store.get(inv["customer"], "customer")
    seq = cus.get("next_invoice_sequence") or 1
    cus["next_invoice_sequence"] = seq + 1
    inv.update({"number": f"{cus['invoice_prefix']}-{seq:04d}", "status": "open", "effective_at": now,
                "ending_balance": 0, "automatically_finalizes_at": None, "webhooks_delivered_at": inv["created"]})
    inv["status_transitions"]["finalized_at"] = now
    evs.append(("invoice.finalized", snap(inv)))
    if inv["amount_due"] == 0:
        evs.extend(_mark_paid(sb, inv, None))
        return
    if pi is None:
        pi = sb.store.add(objects.payment_intent(now, inv["amount_due"], inv["currency"], customer_id=inv["customer"],
                                                 description=description, payment_method_types=["card"]))
        evs.append(("payment_intent.created", snap(pi)))
    else:
        pi.update({"customer": inv["customer"], "description": description})
        ch = sb.store.get(pi.get("latest_charge"), "charge")
        if ch is not None:
            ch.update({"customer": inv["customer"], "description": description})
    pi["_invoice"] = inv["id"]
    ip = sb.store.add(bo.invoice_payment(now, inv, pi["id"]))
    inv["_payment"] = ip["id"]


def pay(sb: Sandbox, inv: dict, pm: dict, evs: list) -> StripeError | None:
    """One payment attempt of an open invoice with `pm`; returns the card error, if any."""
    pi = payment_intent_of(sb, inv)
    if pi is None or pi["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise StripeError(400, f"This invoice's payment cannot be attempted now "
                          f"(PaymentIntent status {pi['status'] if pi else None}).", code="payment_intent_unexpected_state")
    pi_events, err = payments.attempt(sb, pi, pm)
    inv.update({"attempted": True, "attempt_count": inv["attempt_count"] + 1})
    outcome = record(sb, inv, pi)
    evs.extend(outcome + pi_events if pi["status"] == "succeeded" else pi_events + outcome)
    if pi["status"] == "processing":  # a bank debit: settles by itself, then after_settlement
        payments.schedule_settlement(sb, pi["id"], not cards.bank_debit_fails(pm))
    return err


def _mark_paid(sb: Sandbox, inv: dict, ip: dict | None) -> list:
    now = sb.store.now()
    inv.update({"status": "paid", "amount_paid": inv["amount_due"], "amount_remaining": 0, "next_payment_attempt": None})
    inv["status_transitions"]["paid_at"] = now
    out = [("invoice.paid", snap(inv)), ("invoice.payment_succeeded", snap(inv))]
    if ip is not None:
        ip.update({"status": "paid", "amount_paid": inv["amount_due"]})
        ip["status_transitions"]["paid_at"] = now
        out.append(("invoice_payment.paid", snap(ip)))
    return out


def record(sb: Sandbox, inv: dict, pi: dict) -> list:
    """What the state of the invoice's PaymentIntent makes of the invoice; returns its events."""
    if pi["status"] == "succeeded":
        return _mark_paid(sb, inv, payment_of(sb, inv))
    if pi["status"] == "processing":
        inv["next_payment_attempt"] = None
        return []
    retries = inv["billing_reason"] == "subscription_cycle"
    inv["next_payment_attempt"] = sb.store.now() + RETRY_AFTER_SECONDS if retries else None
    return [("invoice.payment_failed", snap(inv))]


def subscription_follows(sb: Sandbox, inv: dict) -> list:
    """The subscription's status after its latest invoice was paid (active) or failed (past_due)."""
    sub = subscription_of(sb, inv)
    if sub is None or sub["latest_invoice"] != inv["id"] or sub["status"] == "canceled":
        return []
    pi = payment_intent_of(sb, inv)
    if inv["status"] == "paid" and sub["status"] in ("incomplete", "past_due", "unpaid"):
        new = "active"
    elif inv["status"] == "open" and pi is not None and pi["status"] == "requires_payment_method" \
            and sub["status"] == "active":
        new = "past_due"
    else:
        return []
    previous, sub["status"] = sub["status"], new
    return [("customer.subscription.updated", snap(sub), {"status": previous})]


def after_settlement(sb: Sandbox, pi: dict) -> list:
    """A bank debit paying an invoice has settled (payments.settle): the invoice's events."""
    inv = sb.store.get(pi.get("_invoice"), "invoice")
    if inv is None or inv["status"] != "open":
        return []
    return record(sb, inv, pi) + subscription_follows(sb, inv)


def pay_now(sb: Sandbox, inv: dict, pm: dict) -> list:
    """POST /v1/invoices/{id}/pay: finalizes a draft, attempts the payment; returns the events.

    Raises the card error after the caller emitted the events (see `payments.emit_all`)."""
    if inv["status"] == "paid":
        raise StripeError(400, "Invoice is already paid")
    if inv["status"] not in ("draft", "open"):
        raise StripeError(400, f"This invoice can no longer be paid (status {inv['status']}).")
    evs: list = []
    if inv["status"] == "draft":
        finalize(sb, inv, evs)
    err = None
    if inv["status"] == "open":
        err = pay(sb, inv, pm, evs)
        evs.extend(subscription_follows(sb, inv))
    payments.emit_all(sb, evs)
    if err is not None:
        raise err
    return evs
