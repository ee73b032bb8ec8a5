"""What happens when money moves: payment methods, PaymentIntent confirmation,
charges, Checkout Session payment/expiry, bank-debit settlement, refunds and
disputes. Every function here expects the caller to hold `sb.store.lock`.
"""

from __future__ import annotations

import copy
import threading

from . import cards, objects, receipts
from .errors import StripeError, card_declined, invalid_param
from .events import Sandbox, emit
from .forms import get_dict, get_int, get_metadata, get_str
from .store import public

BANK_DEBITS = ("sepa_debit", "bacs_debit")


# --- payment methods -------------------------------------------------------------

def _card_pm(sb: Sandbox, number: str, behaviour: cards.CardBehaviour, billing_details=None, metadata=None) -> dict:
    details = cards.card_details(number, behaviour)
    pm = objects.payment_method(sb.store.now(), "card", details, billing_details, metadata)
    pm["_number"] = number
    return sb.store.add(pm)


def create_payment_method(sb: Sandbox, params: dict) -> dict:
    pm_type = get_str(params, "type", required=True)
    billing = get_dict(params, "billing_details")
    metadata = get_metadata(params)
    now = sb.store.now()
    if pm_type == "card":
        card = get_dict(params, "card")
        token = get_str(card, "token", param="card[token]")
        if token:
            number = cards.number_for_token(token)
            if number is None:
                raise StripeError(400, f"No such token: '{token}'", code="resource_missing", param="card[token]")
            behaviour = cards.CARDS[number]
        else:
            number, behaviour = cards.card_for_number(get_str(card, "number", required=True, param="card[number]") or "")
        return _card_pm(sb, number, behaviour, billing, metadata)
    if pm_type == "sepa_debit":
        iban = (get_str(get_dict(params, "sepa_debit"), "iban", required=True, param="sepa_debit[iban]") or "")
        iban = iban.replace(" ", "").upper()
        details = {"bank_code": iban[4:9], "branch_code": "", "country": iban[:2], "fingerprint": cards.fingerprint(iban),
                   "generated_from": {"charge": None, "setup_attempt": None}, "last4": iban[-4:]}
        pm = objects.payment_method(now, "sepa_debit", details, billing, metadata)
        pm["_iban"] = iban
        return sb.store.add(pm)
    if pm_type == "bacs_debit":
        bacs = get_dict(params, "bacs_debit")
        account = get_str(bacs, "account_number", required=True, param="bacs_debit[account_number]") or ""
        sort_code = get_str(bacs, "sort_code", required=True, param="bacs_debit[sort_code]") or ""
        details = {"fingerprint": cards.fingerprint(sort_code + account), "last4": account[-4:], "sort_code": sort_code}
        pm = objects.payment_method(now, "bacs_debit", details, billing, metadata)
        pm["_account_number"] = account
        return sb.store.add(pm)
    raise invalid_param("type", f"The sandbox does not support payment method type '{pm_type}' "
                                "(supported: card, sepa_debit, bacs_debit).")


def resolve_payment_method(sb: Sandbox, ref: str, param: str = "payment_method") -> dict:
    """A stored payment method, or a fresh one for a test token such as `pm_card_visa`."""
    pm = sb.store.get(ref, "payment_method")
    if pm is not None:
        return pm
    number = cards.number_for_token(ref)
    if number is not None:
        return _card_pm(sb, number, cards.CARDS[number])
    raise StripeError(400 if param != "id" else 404, f"No such PaymentMethod: '{ref}'", code="resource_missing", param=param)


def delayed_payment_method(sb: Sandbox, email: str | None) -> dict:
    """The hosted page's "pay later" method: a SEPA debit settled by /_sandbox/.../async_result."""
    iban = cards.DELAYED_IBAN
    details = {"bank_code": iban[4:9], "branch_code": "", "country": iban[:2], "fingerprint": cards.fingerprint(iban),
               "generated_from": {"charge": None, "setup_attempt": None}, "last4": iban[-4:]}
    pm = objects.payment_method(sb.store.now(), "sepa_debit", details, {"email": email})
    pm["_iban"] = iban
    return sb.store.add(pm)


# --- payment intents -------------------------------------------------------------

def new_payment_intent(sb: Sandbox, amount: int, currency: str, **kw) -> dict:
    pi = sb.store.add(objects.payment_intent(sb.store.now(), amount, currency, **kw))
    emit(sb, "payment_intent.created", pi)
    return pi


def _decline_error(behaviour: cards.CardBehaviour) -> StripeError:
    return card_declined(behaviour.message, decline_code=behaviour.decline_code, code=behaviour.error_code)


def attempt(sb: Sandbox, pi: dict, pm: dict) -> tuple[list, StripeError | None]:
    """Runs a payment of `pi` with `pm`. Returns (events to emit, card error or None).

    Cards succeed or fail at once; bank debits stay `processing` until settled.
    The caller emits the returned events (so it can put its own first).
    """
    now = sb.store.now()
    pi["payment_method"] = pm["id"]
    if pm["type"] in BANK_DEBITS:
        ch = sb.store.add(objects.charge(now, pi, pm, "pending"))
        ch["paid"] = False
        receipts.assign(sb, ch)
        pi.update({"status": "processing", "latest_charge": ch["id"], "last_payment_error": None,
                   "processing": {"type": pm["type"]}})
        return [("payment_intent.processing", pi), ("charge.pending", ch)], None
    if pm["type"] != "card":
        raise invalid_param("payment_method", f"The sandbox cannot charge a '{pm['type']}' payment method.")
    behaviour = cards.CARDS[pm["_number"]]
    if behaviour.decline_code:
        err = _decline_error(behaviour)
        outcome = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                   "network_status": "declined_by_network", "reason": behaviour.decline_code, "risk_level": "normal",
                   "risk_score": 20, "seller_message": "The bank did not return any further details with this decline.",
                   "type": "issuer_declined"}
        ch = sb.store.add(objects.charge(now, pi, pm, "failed", behaviour.error_code, behaviour.message, outcome))
        pi.update({"status": "requires_payment_method", "latest_charge": ch["id"],
                   "last_payment_error": {"type": "card_error", "code": behaviour.error_code, "decline_code": behaviour.decline_code,
                                          "message": behaviour.message, "charge": ch["id"], "doc_url": None,
                                          "param": None, "payment_method": public(pm)}})
        err.extra.update({"charge": ch["id"], "payment_intent": public(pi), "payment_method": public(pm)})
        return [("charge.failed", ch), ("payment_intent.payment_failed", pi)], err
    ch = sb.store.add(objects.charge(now, pi, pm, "succeeded"))
    receipts.assign(sb, ch)
    pi.update({"status": "succeeded", "latest_charge": ch["id"], "amount_received": pi["amount"],
               "last_payment_error": None, "processing": None})
    evs = [("payment_intent.succeeded", pi), ("charge.succeeded", ch)]
    if behaviour.dispute:
        evs += open_dispute(sb, ch, inquiry=behaviour.dispute == "inquiry")
    return evs, None


def settle(sb: Sandbox, pi: dict, succeeded: bool) -> list:
    """Settles a `processing` bank debit; returns the events to emit."""
    ch = sb.store.get(pi["latest_charge"], "charge")
    if succeeded:
        ch.update({"status": "succeeded", "paid": True, "captured": True, "amount_captured": ch["amount"],
                   "balance_transaction": ch["balance_transaction"]})
        pi.update({"status": "succeeded", "amount_received": pi["amount"], "processing": None})
        return [("payment_intent.succeeded", pi), ("charge.succeeded", ch)] + _invoice_settled(sb, pi)
    message = "The customer's bank account has insufficient funds to cover this payment."
    ch.update({"status": "failed", "paid": False, "failure_code": "insufficient_funds", "failure_message": message,
               "balance_transaction": None})
    pm = sb.store.get(pi["payment_method"], "payment_method")
    pi.update({"status": "requires_payment_method", "processing": None,
               "last_payment_error": {"type": "card_error" if pm and pm["type"] == "card" else "invalid_request_error",
                                      "code": "insufficient_funds", "message": message, "charge": ch["id"],
                                      "payment_method": public(pm) if pm else None}})
    return [("charge.failed", ch), ("payment_intent.payment_failed", pi)] + _invoice_settled(sb, pi)


def _invoice_settled(sb: Sandbox, pi: dict) -> list:
    """The events of the invoice this PaymentIntent pays, if any (billing imports this module)."""
    if not pi.get("_invoice"):
        return []
    from . import invoices
    return invoices.after_settlement(sb, pi)


def emit_all(sb: Sandbox, events: list) -> None:
    """Emits (type, object) or (type, object, previous_attributes) in order."""
    for event_type, obj, *previous in events:
        emit(sb, event_type, obj, previous[0] if previous else None)


def confirm_payment_intent(sb: Sandbox, pi: dict, pm_ref: str | None) -> dict:
    if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise StripeError(400, f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
                          code="payment_intent_unexpected_state", param=None, payment_intent=public(pi))
    ref = pm_ref or pi.get("payment_method")
    if not ref:
        raise StripeError(400, "You cannot confirm this PaymentIntent because it's missing a payment method. "
                          "To confirm the PaymentIntent with a test card, pass payment_method=pm_card_visa.",
                          code="payment_intent_unexpected_state", payment_intent=public(pi))
    pm = resolve_payment_method(sb, ref)
    events, err = attempt(sb, pi, pm)
    emit_all(sb, events)
    if err is not None:
        raise err
    if pi["status"] == "processing":
        schedule_settlement(sb, pi["id"], not cards.bank_debit_fails(pm))
    return pi


def schedule_settlement(sb: Sandbox, pi_id: str, succeeded: bool, session_id: str | None = None) -> None:
    """Bank debits confirmed through the API settle by themselves after a short delay."""
    def run():
        with sb.store.lock:
            if session_id:
                cs = sb.store.get(session_id, "checkout.session")
                if cs is not None and cs.get("_async_pending"):
                    settle_session(sb, cs, succeeded)
                return
            pi = sb.store.get(pi_id, "payment_intent")
            if pi is not None and pi["status"] == "processing":
                emit_all(sb, settle(sb, pi, succeeded))
    timer = threading.Timer(sb.config.async_delay_seconds, run)
    timer.daemon = True
    timer.start()


def cancel_payment_intent(sb: Sandbox, pi: dict, reason: str | None = None) -> dict:
    if pi["status"] in ("succeeded", "canceled", "processing"):
        raise StripeError(400, f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                          code="payment_intent_unexpected_state")
    pi.update({"status": "canceled", "canceled_at": sb.store.now(), "cancellation_reason": reason})
    emit(sb, "payment_intent.canceled", pi)
    return pi


# --- checkout sessions -----------------------------------------------------------

def session_payment_intent(sb: Sandbox, cs: dict) -> dict:
    """The session's PaymentIntent, created at the first payment attempt (as Checkout does)."""
    pi = sb.store.get(cs.get("_pi"), "payment_intent")
    if pi is not None:
        return pi
    data = cs.get("_pi_data", {})
    pi = new_payment_intent(
        sb, cs["amount_total"], cs["currency"], metadata=copy.deepcopy(data.get("metadata") or {}),
        description=data.get("description"), customer_id=cs.get("customer"),
        payment_method_types=list(cs["payment_method_types"]), receipt_email=data.get("receipt_email"),
        shipping=copy.deepcopy(data.get("shipping")), setup_future_usage=data.get("setup_future_usage"))
    cs["_pi"] = pi["id"]
    if cs["mode"] == "payment":
        cs["payment_intent"] = pi["id"]
    return pi


def check_session_open(cs: dict) -> None:
    if cs["status"] == "expired":
        raise StripeError(400, "This Checkout Session has expired.", code="checkout_session_expired")
    if cs["status"] == "complete":
        raise StripeError(400, "This Checkout Session is already complete.", code="checkout_session_complete")


def pay_session(sb: Sandbox, cs: dict, pm: dict, email: str | None, manual_settlement: bool = False) -> dict:
    """Pays an open session. Raises a card_error if the card is declined (the session stays open)."""
    check_session_open(cs)
    email = email or cs.get("customer_email") or pm["billing_details"].get("email")
    if email and not pm["billing_details"].get("email"):
        pm["billing_details"]["email"] = email
    pi = session_payment_intent(sb, cs)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise StripeError(400, f"This Checkout Session's payment has a status of {pi['status']}.",
                          code="payment_intent_unexpected_state")
    events, err = attempt(sb, pi, pm)
    if err is not None:
        emit_all(sb, events)
        raise err
    cs["status"] = "complete"
    cs["customer_details"] = objects.customer_details(email, pm["billing_details"].get("name"))
    lead: list = []
    if cs["mode"] == "subscription":
        lead = _start_subscription(sb, cs, pm, pi, email)
    if pi["status"] == "succeeded":
        cs["payment_status"] = "paid"
    else:  # a bank debit: complete but unpaid until it settles
        cs["payment_status"] = "unpaid"
        cs["_async_pending"] = True
    emit(sb, "checkout.session.completed", cs)
    emit_all(sb, lead + events)
    if cs.get("_async_pending") and not manual_settlement:
        schedule_settlement(sb, pi["id"], not cards.bank_debit_fails(pm), session_id=cs["id"])
    return cs


def _start_subscription(sb: Sandbox, cs: dict, pm: dict, pi: dict, email: str | None) -> list:
    """The customer, the subscription and its first invoice, paid by the session's PaymentIntent."""
    from . import subscriptions  # it builds on this module
    return subscriptions.start_from_checkout(sb, cs, pm, pi, email)


def settle_session(sb: Sandbox, cs: dict, succeeded: bool) -> dict:
    if not cs.get("_async_pending"):
        raise StripeError(409, "This Checkout Session has no pending delayed payment "
                          f"(status {cs['status']}, payment_status {cs['payment_status']}).",
                          code="checkout_session_no_pending_payment")
    pi = sb.store.get(cs["_pi"], "payment_intent")
    events = settle(sb, pi, succeeded)
    cs["_async_pending"] = False
    if succeeded:
        cs["payment_status"] = "paid"
        emit(sb, "checkout.session.async_payment_succeeded", cs)
    else:
        emit(sb, "checkout.session.async_payment_failed", cs)
    emit_all(sb, events)
    return cs


def expire_session(sb: Sandbox, cs: dict) -> dict:
    if cs["status"] != "open":
        raise StripeError(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. "
                          f"This Checkout Session has a status of \"{cs['status']}\".")
    cs["status"] = "expired"
    emit(sb, "checkout.session.expired", cs)
    pi = sb.store.get(cs.get("_pi"), "payment_intent")
    if pi is not None and pi["status"] in ("requires_payment_method", "requires_confirmation"):
        cancel_payment_intent(sb, pi, "abandoned")
    return cs


def expire_due(sb: Sandbox) -> list[str]:
    """Expires every open session whose expires_at has passed; returns their ids."""
    with sb.store.lock:
        now = sb.store.now()
        due = [cs for cs in reversed(sb.store.newest_first("checkout.session"))
               if cs["status"] == "open" and cs["expires_at"] <= now]
        for cs in due:
            expire_session(sb, cs)
        return [cs["id"] for cs in due]


# --- refunds ---------------------------------------------------------------------

def create_refund(sb: Sandbox, params: dict) -> dict:
    charge_id = get_str(params, "charge")
    pi_id = get_str(params, "payment_intent")
    if charge_id and pi_id:
        raise StripeError(400, "You may only specify one of these parameters: charge, payment_intent.", param="charge")
    if charge_id:
        ch = sb.store.get(charge_id, "charge")
        if ch is None:
            raise StripeError(400, f"No such charge: '{charge_id}'", code="resource_missing", param="charge")
    elif pi_id:
        pi = sb.store.get(pi_id, "payment_intent")
        if pi is None:
            raise StripeError(400, f"No such payment_intent: '{pi_id}'", code="resource_missing", param="payment_intent")
        ch = sb.store.get(pi.get("latest_charge"), "charge")
        if ch is None or ch["status"] != "succeeded":
            raise StripeError(400, f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.", param="payment_intent")
    else:
        raise StripeError(400, "One of the following params should be provided for this request: charge or payment_intent.",
                          code="parameter_missing")
    if ch["status"] != "succeeded":
        raise StripeError(400, f"Charge {ch['id']} has a status of {ch['status']} and cannot be refunded.", param="charge")
    if ch.get("_dispute_open_chargeback"):
        raise StripeError(400, f"Charge {ch['id']} has been charged back; cannot issue a refund.",
                          code="charge_disputed")
    remaining = ch["amount"] - ch["amount_refunded"]
    if remaining <= 0:
        raise StripeError(400, f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
    amount = get_int(params, "amount", minimum=1)
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise StripeError(400, f"Refund amount ({objects.format_amount(amount, ch['currency'])}) is greater than "
                          f"unrefunded amount on charge ({objects.format_amount(remaining, ch['currency'])})",
                          code="amount_too_large", param="amount")
    reason = get_str(params, "reason")
    if reason and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
        raise invalid_param("reason", f"Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer")
    rf = sb.store.add(objects.refund(sb.store.now(), ch, amount, reason, get_metadata(params)))
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    ch["refunds"]["data"].insert(0, public(rf))
    emit(sb, "charge.refunded", ch)
    emit(sb, "refund.created", rf)
    return rf


# --- disputes --------------------------------------------------------------------

def open_dispute(sb: Sandbox, ch: dict, inquiry: bool) -> list:
    dp = sb.store.add(objects.dispute(sb.store.now(), ch, inquiry))
    ch["disputed"] = True
    if not inquiry:
        ch["_dispute_open_chargeback"] = True
    events = [("charge.dispute.created", dp)]
    if not inquiry:
        events.append(("charge.dispute.funds_withdrawn", dp))
    return events


def close_dispute(sb: Sandbox, dp: dict, status: str | None = None) -> dict:
    """Closes a dispute. Without `status` it is accepted (lost, or warning_closed for an inquiry)."""
    inquiry = dp["status"].startswith("warning_")
    if dp["status"] in ("won", "lost", "warning_closed"):
        raise StripeError(400, f"This dispute is already closed (status {dp['status']}).")
    if status is None:
        status = "warning_closed" if inquiry else "lost"
    if status not in ("won", "lost", "warning_closed"):
        raise invalid_param("status", "status must be one of won, lost, warning_closed")
    dp["status"] = status
    ch = sb.store.get(dp["charge"], "charge")
    if ch is not None:
        ch["_dispute_open_chargeback"] = False
    emit(sb, "charge.dispute.closed", dp)
    if status == "won" and not inquiry:
        emit(sb, "charge.dispute.funds_reinstated", dp)
    return dp
