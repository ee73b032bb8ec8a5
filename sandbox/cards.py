"""Stripe's test payment details and how the sandbox treats each.

Cards by number (hosted page) or by test token (`pm_card_visa`, `tok_visa`,
`pm_card_chargeDeclined`, `pm_card_createDispute`, ...), and bank debits
(SEPA IBAN / Bacs account) that settle later, successfully or not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import StripeError


@dataclass(frozen=True)
class CardBehaviour:
    brand: str
    funding: str = "credit"
    decline_code: str | None = None     # None: the charge succeeds
    error_code: str = "card_declined"
    message: str = "Your card was declined."
    dispute: str | None = None           # None | "fraudulent" | "inquiry"


_DECLINED = "Your card was declined."

CARDS: dict[str, CardBehaviour] = {
    "4242424242424242": CardBehaviour("visa"),
    "4000056655665556": CardBehaviour("visa", funding="debit"),
    "5555555555554444": CardBehaviour("mastercard"),
    "2223003122003222": CardBehaviour("mastercard"),
    "5200828282828210": CardBehaviour("mastercard", funding="debit"),
    "378282246310005": CardBehaviour("amex"),
    "371449635398431": CardBehaviour("amex"),
    "6011111111111117": CardBehaviour("discover"),
    "3056930009020004": CardBehaviour("diners"),
    "3566002020360505": CardBehaviour("jcb"),
    "6200000000000005": CardBehaviour("unionpay"),
    "4000000000000002": CardBehaviour("visa", decline_code="generic_decline"),
    "4000000000009995": CardBehaviour("visa", decline_code="insufficient_funds", message="Your card has insufficient funds."),
    "4000000000009987": CardBehaviour("visa", decline_code="lost_card"),
    "4000000000009979": CardBehaviour("visa", decline_code="stolen_card"),
    "4000000000000069": CardBehaviour("visa", decline_code="expired_card", error_code="expired_card", message="Your card has expired."),
    "4000000000000127": CardBehaviour("visa", decline_code="incorrect_cvc", error_code="incorrect_cvc", message="Your card's security code is incorrect."),
    "4000000000000119": CardBehaviour("visa", decline_code="processing_error", error_code="processing_error",
                                      message="An error occurred while processing your card. Try again in a little bit."),
    "4100000000000019": CardBehaviour("visa", decline_code="fraudulent"),
    "4000000000000341": CardBehaviour("visa", decline_code="generic_decline"),  # attaches, then every charge fails
    "4000000000000259": CardBehaviour("visa", dispute="fraudulent"),
    "4000000000001976": CardBehaviour("visa", dispute="inquiry"),
}

# test token suffix (pm_card_<x>, tok_<x>) -> card number
TOKENS: dict[str, str] = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "mastercard_debit": "5200828282828210",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "diners": "3056930009020004",
    "jcb": "3566002020360505",
    "unionpay": "6200000000000005",
    "chargeDeclined": "4000000000000002",
    "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987",
    "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069",
    "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119",
    "chargeDeclinedFraudulent": "4100000000000019",
    "chargeCustomerFail": "4000000000000341",
    "createDispute": "4000000000000259",
    "createDisputeInquiry": "4000000000001976",
}

# Bank debits that fail when they settle (everything else succeeds).
FAILING_IBANS = {
    "AT861904300235473202",  # Stripe: fails (insufficient_funds)
    "AT601904300000121212",  # Stripe: processing, then fails
    "IT60X0542811101000000123456",  # used by `stripe trigger checkout.session.async_payment_failed`
}
FAILING_BACS_ACCOUNTS = {"90012345", "33333335"}

# The hosted page's "Pay later (delayed method)": a SEPA debit settled by /_sandbox/.../async_result.
DELAYED_IBAN = "AT611904300234573201"


def digits(number: str) -> str:
    return re.sub(r"[\s-]", "", number or "")


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def card_for_number(raw: str, param: str = "card[number]") -> tuple[str, CardBehaviour]:
    """Validates a card number as Stripe's test mode does; returns (digits, behaviour)."""
    number = digits(raw)
    if not number:
        raise StripeError(402, "Your card number is incomplete.", type="card_error", code="incomplete_number", param=param)
    if not number.isdigit() or not 13 <= len(number) <= 19 or not luhn_ok(number):
        raise StripeError(402, "Your card number is invalid.", type="card_error", code="invalid_number", param=param)
    behaviour = CARDS.get(number)
    if behaviour is None:
        raise StripeError(402, "Your card was declined. Your request was in test mode, but used a non test card. "
                          "For a list of valid test cards, visit: https://stripe.com/docs/testing.",
                          type="card_error", code="card_declined", decline_code="test_mode_live_card", param=param)
    return number, behaviour


def number_for_token(token: str) -> str | None:
    for prefix in ("pm_card_", "tok_"):
        if token.startswith(prefix):
            return TOKENS.get(token[len(prefix):])
    return None


def card_details(number: str, behaviour: CardBehaviour) -> dict:
    return {"brand": behaviour.brand, "last4": number[-4:], "funding": behaviour.funding,
            "fingerprint": fingerprint(number), "exp_month": 12, "exp_year": 2034, "country": "US",
            "_number": number}


def bank_debit_fails(pm: dict) -> bool:
    if pm["type"] == "sepa_debit":
        return pm.get("_iban", "") in FAILING_IBANS
    if pm["type"] == "bacs_debit":
        return pm.get("_account_number", "") in FAILING_BACS_ACCOUNTS
    return False
