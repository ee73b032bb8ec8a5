"""Subscriptions: created through the API or a plan Checkout (each with its first invoice,
billing_reason `subscription_create`, paid at once on the default payment method), updated
(metadata, `cancel_at_period_end`, ...), canceled, and renewed by the test control
(`POST /_sandbox/subscriptions/{id}/cycle`: the next period's invoice, `subscription_cycle`).

Statuses as at Stripe with `payment_behavior=allow_incomplete` (the default and the only one
here): a declined first payment leaves the subscription `incomplete` (its invoice open, the
PaymentIntent `requires_payment_method`); a declined renewal makes it `past_due`; paying the
open invoice (POST /v1/invoices/{id}/pay) makes it `active` again. No trials, no prorations,
no `incomplete_expired`. Every function here expects the caller to hold `sb.store.lock`.
"""

from __future__ import annotations

import copy

from . import billing_customers, cards, catalog, invoices, objects, payments
from .errors import StripeError, invalid_param
from .events import Sandbox, emit
from .forms import get_bool, get_dict, get_int, get_metadata, get_str
from .invoices import snap

PERIOD_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}
UNSUPPORTED = ("trial_period_days", "trial_end", "trial_from_plan", "billing_cycle_anchor", "add_invoice_items",
               "discounts", "pause_collection", "cancel_at", "backdate_start_date", "schedule")
NO_PAYMENT_METHOD = ("This customer has no attached payment source or default payment method. Please consider adding "
                     "a default payment method.")


def period_seconds(recurring: dict) -> int:
    return PERIOD_SECONDS[recurring["interval"]] * recurring["interval_count"]


def _reject_unsupported(params: dict) -> None:
    for key in UNSUPPORTED:
        if key in params:
            raise invalid_param(key, f"The sandbox does not support `{key}` on subscriptions.")
    method = get_str(params, "collection_method")
    if method not in (None, "charge_automatically"):
        raise invalid_param("collection_method", "The sandbox only bills subscriptions with charge_automatically.")


def _items(sb: Sandbox, params: dict) -> list[dict]:
    raw = params.get("items")
    if not raw:
        raise StripeError(400, "Missing required param: items.", code="parameter_missing", param="items")
    if not isinstance(raw, list):
        raise invalid_param("items", "Invalid array: items must be an array of hashes.")
    items = []
    for i, item in enumerate(raw):
        base = f"items[{i}]"
        item = item if isinstance(item, dict) else {}
        price_id = get_str(item, "price", param=f"{base}[price]")
        if price_id:
            price = sb.store.get(price_id, "price")
            if price is None:
                raise StripeError(400, f"No such price: '{price_id}'", code="resource_missing", param=f"{base}[price]")
        elif get_dict(item, "price_data"):
            price = catalog.price_from_params(sb, get_dict(item, "price_data"), prefix=f"{base}[price_data]",
                                              emit_events=False)
        else:
            raise StripeError(400, f"Missing required param: {base}[price].", code="parameter_missing",
                              param=f"{base}[price]")
        if not price["recurring"]:
            raise invalid_param(f"{base}[price]", f"The price specified is set to `type=one_time` but this field only "
                                "accepts prices with `type=recurring`.")
        quantity = get_int(item, "quantity", param=f"{base}[quantity]", minimum=1)
        items.append({"price": price, "quantity": 1 if quantity is None else quantity, "currency": price["currency"]})
    if len({(it["currency"], it["price"]["recurring"]["interval"], it["price"]["recurring"]["interval_count"])
            for it in items}) > 1:
        raise invalid_param("items", "All prices on a subscription must have the same currency and recurring interval.")
    return items


def _period(sub: dict) -> tuple[int, int]:
    item = sub["items"]["data"][0]
    return item["current_period_start"], item["current_period_end"]


def _first_invoice(sb: Sandbox, sub: dict, evs: list, pi: dict | None = None) -> dict:
    now = sb.store.now()
    inv = invoices.subscription_invoice(sb, sub, "subscription_create", now, now, evs)
    invoices.finalize(sb, inv, evs, pi=pi, description="Subscription creation")
    return inv


def create(sb: Sandbox, params: dict) -> dict:
    """POST /v1/subscriptions."""
    cus = billing_customers.require_customer(sb, get_str(params, "customer"))
    behaviour = get_str(params, "payment_behavior") or "allow_incomplete"
    if behaviour != "allow_incomplete":
        raise invalid_param("payment_behavior", "The sandbox supports only payment_behavior=allow_incomplete.")
    _reject_unsupported(params)
    items = _items(sb, params)
    ref = get_str(params, "default_payment_method")
    pm = billing_customers.customer_pm(sb, cus, ref, "default_payment_method") if ref else \
        billing_customers.default_pm(sb, cus)
    if pm is None:
        raise StripeError(400, NO_PAYMENT_METHOD, code="resource_missing")
    sub = objects.subscription(sb.store.now(), cus["id"], items, get_metadata(params), pm["id"] if ref else None)
    sub["description"] = get_str(params, "description")
    sb.store.add(sub)
    if get_bool(params, "cancel_at_period_end", False):
        sub.update({"cancel_at_period_end": True, "cancel_at": _period(sub)[1], "canceled_at": sub["created"]})
    evs: list = []
    inv = _first_invoice(sb, sub, evs)
    if inv["status"] == "open":
        invoices.pay(sb, inv, pm, evs)  # a decline leaves the subscription incomplete, as allow_incomplete does
    pi = invoices.payment_intent_of(sb, inv)
    sub["status"] = "incomplete" if pi is not None and pi["status"] == "requires_payment_method" else "active"
    payments.emit_all(sb, [("customer.subscription.created", snap(sub))] + evs)
    return sub


def start_from_checkout(sb: Sandbox, cs: dict, pm: dict, pi: dict, email: str | None) -> list:
    """A paid (or processing) plan Checkout: customer, subscription, first invoice paid by the
    session's PaymentIntent. Returns the events, for payments.pay_session to emit."""
    events = []
    cus = sb.store.get(cs.get("customer"), "customer")
    if cus is None:
        cus = sb.store.add(objects.customer(sb.store.now(), email=email))
        cs["customer"] = cus["id"]
        events.append(("customer.created", snap(cus)))
    pm["customer"] = cus["id"]
    sub = sb.store.add(objects.subscription(sb.store.now(), cus["id"], cs["_line_items"],
                                            copy.deepcopy(cs.get("_subscription_metadata") or {}), pm["id"]))
    cs["subscription"] = sub["id"]
    evs: list = []
    inv = _first_invoice(sb, sub, evs, pi=pi)
    cs["invoice"] = inv["id"]
    inv.update({"attempted": True, "attempt_count": 1})
    evs.extend(invoices.record(sb, inv, pi))
    sub["status"] = "active"  # the payment succeeded or is processing (a bank debit)
    return events + [("customer.subscription.created", snap(sub))] + evs


def update(sb: Sandbox, sub: dict, params: dict, reason: str | None = None) -> dict:
    """POST /v1/subscriptions/{id}: metadata, description, default_payment_method,
    cancel_at_period_end, cancellation_details. `reason` (the customer portal's
    `cancellation_requested`) is the cancellation_details.reason a cancellation sets."""
    before = copy.deepcopy(sub)
    if sub["status"] == "canceled" and set(params) - {"metadata", "cancellation_details", "expand"}:
        raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
    if "items" in params:
        raise invalid_param("items", "The sandbox cannot change a subscription's items.")
    _reject_unsupported(params)
    if "metadata" in params:
        raw = params["metadata"] if isinstance(params["metadata"], dict) else {}
        meta = {**sub["metadata"], **get_metadata(params)}
        sub["metadata"] = {k: v for k, v in meta.items() if raw.get(k) != ""}
    if "description" in params:
        sub["description"] = get_str(params, "description")
    if "default_payment_method" in params:
        ref = get_str(params, "default_payment_method")
        cus = sb.store.get(sub["customer"], "customer")
        sub["default_payment_method"] = \
            billing_customers.customer_pm(sb, cus, ref, "default_payment_method")["id"] if ref else None
    at_end = get_bool(params, "cancel_at_period_end")
    if at_end is not None:
        sub.update({"cancel_at_period_end": at_end, "cancel_at": _period(sub)[1] if at_end else None,
                    "canceled_at": sb.store.now() if at_end else None})
        if reason is not None:
            sub["cancellation_details"] = {**sub["cancellation_details"], "reason": reason if at_end else None}
    _cancellation_details(sub, params)
    changed = {k: before[k] for k in sub if not k.startswith("_") and sub[k] != before.get(k)}
    if changed:
        emit(sb, "customer.subscription.updated", sub, changed)
    return sub


def _cancellation_details(sub: dict, params: dict) -> None:
    details = get_dict(params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            sub["cancellation_details"][key] = get_str(details, key, param=f"cancellation_details[{key}]")


def _end(sb: Sandbox, sub: dict, ended_at: int, reason: str) -> dict:
    sub.update({"status": "canceled", "ended_at": ended_at, "canceled_at": sub["canceled_at"] or ended_at})
    sub["cancellation_details"]["reason"] = reason
    emit(sb, "customer.subscription.deleted", sub)
    return sub


def cancel(sb: Sandbox, sub: dict, params: dict) -> dict:
    """DELETE /v1/subscriptions/{id}: canceled at once."""
    if sub["status"] == "canceled":
        raise StripeError(400, f"This subscription ({sub['id']}) has already been canceled.")
    _cancellation_details(sub, params)
    sub["canceled_at"] = sb.store.now()
    return _end(sb, sub, sub["canceled_at"], "cancellation_requested")


def _cycle_payment_method(sb: Sandbox, sub: dict, card: str | None) -> dict:
    if card:
        if cards.number_for_token(card) or sb.store.get(card, "payment_method"):
            return payments.resolve_payment_method(sb, card, param="card")
        number, behaviour = cards.card_for_number(card, param="card")
        return payments._card_pm(sb, number, behaviour)
    pm = sb.store.get(sub["default_payment_method"], "payment_method") or \
        billing_customers.default_pm(sb, sb.store.get(sub["customer"], "customer"))
    if pm is None:
        raise StripeError(400, NO_PAYMENT_METHOD + " Pass a card to /_sandbox/subscriptions/{id}/cycle.",
                          code="resource_missing")
    return pm


def cycle(sb: Sandbox, sub: dict, card: str | None = None) -> dict | None:
    """The end of the current period: a subscription set to cancel ends (customer.subscription.deleted);
    any other is renewed: the next period and its invoice (`subscription_cycle`), paid with `card`
    (a number, token or PaymentMethod id) or the default payment method. Returns the invoice."""
    if sub["status"] not in ("active", "past_due"):
        raise StripeError(409, f"Only active or past_due subscriptions renew; {sub['id']} is {sub['status']}.",
                          code="subscription_not_renewable")
    start, end = _period(sub)
    if sub["cancel_at_period_end"]:
        _end(sb, sub, end, "cancellation_requested")
        return None
    pm = _cycle_payment_method(sb, sub, card)
    previous = {"items": copy.deepcopy(sub["items"])}
    new_end = end + period_seconds(sub["items"]["data"][0]["price"]["recurring"])
    for item in sub["items"]["data"]:
        item.update({"current_period_start": end, "current_period_end": new_end})
    evs: list = [("customer.subscription.updated", snap(sub), previous)]
    inv = invoices.subscription_invoice(sb, sub, "subscription_cycle", start, end, evs)
    invoices.finalize(sb, inv, evs, description="Subscription update")
    if inv["status"] == "open":
        invoices.pay(sb, inv, pm, evs)
        evs.extend(invoices.subscription_follows(sb, inv))
    payments.emit_all(sb, evs)
    return inv
