"""A customer's payment methods, as billing uses them: attach and detach, the invoice default
(`invoice_settings.default_payment_method`), and customer updates.

As at Stripe, a card that declines every charge cannot be attached (the attach is declined),
except `4000 0000 0000 0341` / `pm_card_chargeCustomerFail`: it attaches, then each charge fails.
A test token (`pm_card_visa`) attached to a customer becomes a new PaymentMethod of that
customer; naming the same token again for that customer (e.g. as its default) means that one.
Every function here expects the caller to hold `sb.store.lock`.
"""

from __future__ import annotations

import copy

from . import cards, payments
from .errors import StripeError, card_declined, invalid_param
from .events import Sandbox, emit
from .forms import get_dict, get_metadata, get_str

ATTACHABLE_DECLINES = {"4000000000000341"}  # Stripe: "attaching this card to a Customer object succeeds"


def require_customer(sb: Sandbox, customer_id: str | None, param: str = "customer") -> dict:
    if not customer_id:
        raise StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)
    cus = sb.store.get(customer_id, "customer")
    if cus is None:
        raise StripeError(400, f"No such customer: '{customer_id}'", code="resource_missing", param=param)
    return cus


def attach(sb: Sandbox, pm_ref: str, customer_id: str | None) -> tuple[dict, list]:
    """Attaches a payment method (or a fresh one for a test token); returns it and the events to emit."""
    cus = require_customer(sb, customer_id)
    pm = sb.store.get(pm_ref, "payment_method")
    if pm is None:
        pm = payments.resolve_payment_method(sb, pm_ref, param="id")
        pm["_token"] = pm_ref
    if pm["customer"] == cus["id"]:
        return pm, []
    if pm["customer"]:
        raise StripeError(400, "The payment method you provided has already been attached to a customer.",
                          param="payment_method")
    if pm["type"] == "card":
        behaviour = cards.CARDS[pm["_number"]]
        if behaviour.decline_code and pm["_number"] not in ATTACHABLE_DECLINES:
            raise card_declined(behaviour.message, decline_code=behaviour.decline_code, code=behaviour.error_code)
    pm["customer"] = cus["id"]
    return pm, [("payment_method.attached", copy.deepcopy(pm))]


def detach(sb: Sandbox, pm: dict) -> dict:
    if not pm["customer"]:
        raise StripeError(400, "The payment method you provided is not attached to a customer so detachment is "
                          "impossible.", param="payment_method")
    cus = sb.store.get(pm["customer"], "customer")
    if cus is not None and cus["invoice_settings"].get("default_payment_method") == pm["id"]:
        cus["invoice_settings"]["default_payment_method"] = None
    previous = pm["customer"]
    pm["customer"] = None
    emit(sb, "payment_method.detached", pm, {"customer": previous})
    return pm


def customer_pm(sb: Sandbox, cus: dict, ref: str, param: str) -> dict:
    """`ref` as one of the customer's payment methods (a test token: the one attached for it)."""
    pm = sb.store.get(ref, "payment_method")
    if pm is None:
        pm = next((p for p in sb.store.newest_first("payment_method")
                   if p.get("_token") == ref and p["customer"] == cus["id"]), None)
    if pm is None or pm["customer"] != cus["id"]:
        raise StripeError(400, f"The customer does not have a payment method with the ID {ref}. The payment method "
                          "must be attached to the customer.", code="resource_missing", param=param)
    return pm


def default_pm(sb: Sandbox, cus: dict) -> dict | None:
    return sb.store.get(cus["invoice_settings"].get("default_payment_method"), "payment_method")


def _set_default(sb: Sandbox, cus: dict, params: dict) -> None:
    settings = get_dict(params, "invoice_settings")
    if "default_payment_method" not in settings:
        return
    ref = get_str(settings, "default_payment_method", param="invoice_settings[default_payment_method]")
    pm_id = customer_pm(sb, cus, ref, "invoice_settings[default_payment_method]")["id"] if ref else None
    cus["invoice_settings"]["default_payment_method"] = pm_id


def on_create(sb: Sandbox, cus: dict, params: dict) -> list:
    """`payment_method` and `invoice_settings[default_payment_method]` of POST /v1/customers.

    Returns the events to emit after customer.created."""
    events = []
    ref = get_str(params, "payment_method")
    if ref:
        _, events = attach(sb, ref, cus["id"])
    _set_default(sb, cus, params)
    return events


UPDATABLE = ("email", "name", "description", "phone")


def update(sb: Sandbox, cus: dict, params: dict) -> dict:
    before = copy.deepcopy(cus)
    for key in UPDATABLE:
        if key in params:
            cus[key] = get_str(params, key)
    if "metadata" in params:
        meta = dict(cus["metadata"])
        raw = params["metadata"] if isinstance(params["metadata"], dict) else {}
        meta.update(get_metadata(params))
        for k in [k for k, v in raw.items() if v == ""]:
            meta.pop(k, None)
        cus["metadata"] = meta
    if "payment_method" in params:
        raise invalid_param("payment_method", "payment_method can only be set when a customer is created; "
                            "attach it with POST /v1/payment_methods/{id}/attach.")
    _set_default(sb, cus, params)
    changed = {k: before[k] for k in cus if not k.startswith("_") and cus[k] != before.get(k)}
    if changed:
        emit(sb, "customer.updated", cus, changed)
    return cus
