"""A Checkout Session and the rules a paid one must meet before anything is credited.

Pure functions over plain data: no I/O. Everything here is checked against the catalog,
never against what the client or the session claims about itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from core.domain.catalog import Catalog, Package
from core.domain.errors import PurchaseRejected
from core.domain.ids import is_valid_doc_id


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    mode: Any
    status: Any
    payment_status: Any
    client_reference_id: Any
    metadata: Mapping[str, Any]
    amount_total: Any
    currency: Any
    payment_intent: str | None
    customer_email: str | None

    @classmethod
    def from_stripe(cls, obj: Mapping[str, Any]) -> "CheckoutSession":
        metadata = obj.get("metadata")
        payment_intent = obj.get("payment_intent")
        if isinstance(payment_intent, Mapping):
            payment_intent = payment_intent.get("id")
        details = obj.get("customer_details")
        email = obj.get("customer_email") or (details.get("email") if isinstance(details, Mapping) else None)
        return cls(
            id=obj.get("id") if isinstance(obj.get("id"), str) else "",
            mode=obj.get("mode"),
            status=obj.get("status"),
            payment_status=obj.get("payment_status"),
            client_reference_id=obj.get("client_reference_id"),
            metadata=metadata if isinstance(metadata, Mapping) else {},
            amount_total=obj.get("amount_total"),
            currency=obj.get("currency"),
            payment_intent=payment_intent if isinstance(payment_intent, str) else None,
            customer_email=email if isinstance(email, str) else None,
        )

    @property
    def has_valid_id(self) -> bool:
        return is_valid_doc_id(self.id)


@dataclass(frozen=True)
class ValidPurchase:
    session_id: str
    user_id: str
    package: Package
    amount_paid: int
    currency: str
    payment_intent: str | None


def claimed_user_id(session: CheckoutSession) -> str | None:
    """The user id the session names, if it names exactly one valid one; else None."""
    try:
        return resolve_user_id(session)
    except PurchaseRejected:
        return None


def resolve_user_id(session: CheckoutSession) -> str:
    ref, meta = session.client_reference_id, session.metadata.get("userId")
    if ref not in (None, "") and meta not in (None, "") and ref != meta:
        raise PurchaseRejected("user_mismatch", "client_reference_id and metadata.userId differ")
    user_id = ref if ref not in (None, "") else meta
    if user_id in (None, ""):
        raise PurchaseRejected("missing_user", "no client_reference_id or metadata.userId")
    if not is_valid_doc_id(user_id):
        raise PurchaseRejected("invalid_user", "user id is not a valid document id")
    return user_id


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_paid_session(session: CheckoutSession, catalog: Catalog) -> ValidPurchase:
    """Every check before a credit. Raises PurchaseRejected with a stable reason code."""
    if not session.has_valid_id:
        raise PurchaseRejected("invalid_session_id", "checkout session id is not a valid document id")
    if session.mode != "payment":
        raise PurchaseRejected("wrong_mode", f"mode is {session.mode!r}, expected 'payment'")
    if session.payment_status != "paid":
        raise PurchaseRejected("not_paid", f"payment_status is {session.payment_status!r}")
    user_id = resolve_user_id(session)
    package = catalog.get(session.metadata.get("packageId"))
    if package is None:
        raise PurchaseRejected("unknown_package", f"metadata.packageId {session.metadata.get('packageId')!r} is not in the catalog")
    if session.metadata.get("tokens") != str(package.tokens):
        raise PurchaseRejected("tokens_mismatch", f"metadata.tokens {session.metadata.get('tokens')!r} != catalog {package.tokens}")
    if not _is_int(session.amount_total) or session.amount_total != package.price_cents:
        raise PurchaseRejected("amount_mismatch", f"amount_total {session.amount_total!r} != catalog {package.price_cents}")
    if not isinstance(session.currency, str) or session.currency.lower() != package.currency:
        raise PurchaseRejected("currency_mismatch", f"currency {session.currency!r} != catalog {package.currency!r}")
    return ValidPurchase(session.id, user_id, package, session.amount_total, package.currency, session.payment_intent)
