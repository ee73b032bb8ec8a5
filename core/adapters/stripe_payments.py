"""The Payments port on Stripe's API: PaymentIntents, invoices, Checkout Sessions, subscriptions and
receipts (read), cancelling a subscription (the one write), and customer portal sessions.

A 404 means Stripe does not know the object (``None``); every other error propagates, so
the task's retry policy decides (connection errors and 5xx are transient).
"""
from __future__ import annotations

from typing import Any, Mapping

import stripe


def _plain(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripePayments:
    def __init__(self, client: stripe.StripeClient):
        self.v1 = client.v1

    def payment_intent(self, payment_intent_id: str) -> Mapping[str, Any] | None:
        try:
            return _plain(self.v1.payment_intents.retrieve(payment_intent_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    def invoice_for_payment_intent(self, payment_intent_id: str) -> Mapping[str, Any] | None:
        page = _plain(self.v1.invoice_payments.list(
            {"payment": {"type": "payment_intent", "payment_intent": payment_intent_id}, "limit": 1}))
        for item in page.get("data") or []:
            invoice_id = item.get("invoice")
            invoice_id = invoice_id.get("id") if isinstance(invoice_id, dict) else invoice_id
            if isinstance(invoice_id, str):
                return _plain(self.v1.invoices.retrieve(invoice_id))
        return None

    def payment_intent_of_invoice(self, invoice_id: str) -> str | None:
        page = _plain(self.v1.invoice_payments.list({"invoice": invoice_id, "limit": 10}))
        for item in page.get("data") or []:
            payment = item.get("payment") or {}
            if item.get("status") == "paid" and payment.get("type") == "payment_intent":
                pi = payment.get("payment_intent")
                return pi.get("id") if isinstance(pi, dict) else pi
        return None

    def invoice(self, invoice_id: str) -> Mapping[str, Any] | None:
        try:
            return _plain(self.v1.invoices.retrieve(invoice_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    def checkout_session(self, session_id: str) -> Mapping[str, Any]:
        return _plain(self.v1.checkout.sessions.retrieve(session_id))

    def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> Mapping[str, Any] | None:
        """``cancel_at_period_end=true`` (POST /v1/subscriptions/{id}), or at once (DELETE /v1/subscriptions/{id})."""
        try:
            if at_period_end:
                return _plain(self.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": True}))
            return _plain(self.v1.subscriptions.cancel(subscription_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    def receipt_url(self, payment_intent_id: str) -> str | None:
        """The PaymentIntent with its ``latest_charge`` expanded: that charge's ``receipt_url``."""
        try:
            intent = _plain(self.v1.payment_intents.retrieve(payment_intent_id, {"expand": ["latest_charge"]}))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        charge = intent.get("latest_charge")
        url = charge.get("receipt_url") if isinstance(charge, dict) else None
        return url if isinstance(url, str) and url else None

    def subscription(self, subscription_id: str) -> Mapping[str, Any] | None:
        try:
            return _plain(self.v1.subscriptions.retrieve(subscription_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    def billing_portal_session(self, customer_id: str, return_url: str) -> str:
        """POST /v1/billing_portal/sessions (the account's default portal configuration)."""
        session = _plain(self.v1.billing_portal.sessions.create({"customer": customer_id, "return_url": return_url}))
        return session["url"]
