"""Errors that carry a decision: refuse the caller, reject the payment for good, or stop.

Each maps to one answer: InvalidRequest 400, InsufficientFunds 402, KeyConflict 409,
AccountFrozen 423, UnknownUser 404, UnknownHold 404, HoldConflict 409, HoldExpired 410,
Unauthorized 401, Forbidden 403; PurchaseRejected and MalformedEvent are never retried. A
``Refusal`` is a decision about one request only: a batch of requests on one account
(core/services/account_batch.py) answers it to that request and commits the others.
"""
from __future__ import annotations


class Refusal(Exception):
    """This request is refused; nothing it asked for changed (the account's other work goes on)."""


class InvalidRequest(Refusal):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InsufficientFunds(Refusal):
    def __init__(self, balance: int, amount: int, available: int | None = None):
        super().__init__(f"balance {balance} is below {amount}")
        self.balance = balance
        self.amount = amount
        self.available = balance if available is None else available


class AccountFrozen(Refusal):
    def __init__(self, reasons: list[str]):
        super().__init__("account frozen: " + ", ".join(reasons))
        self.reasons = reasons


class KeyConflict(Refusal):
    """The idempotency key was used before for a different request."""


class UnknownUser(Refusal):
    pass


class UnknownHold(Refusal):
    """No such hold for this user (another user's is answered the same: 404)."""


class HoldConflict(Refusal):
    """The hold is no longer open for this (captured, released), or its key was used otherwise."""


class UnknownEndpoint(Refusal):
    """No such webhook endpoint (operators' commands)."""


class UnknownDelivery(Refusal):
    """No such delivery, or not one that can be replayed (operators' commands)."""


class HoldExpired(Refusal):
    """The hold expired before this capture or extension (410): its tokens are free again."""


class Unauthorized(Exception):
    """The caller did not prove who it is (401), with a short reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """The caller proved who it is but may not do this (403), with a short reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnknownPurchase(Exception):
    """No such purchase for this user (another user's is answered the same: 404)."""


class PurchaseRejected(Exception):
    """A paid payment failed validation against the catalog. Never retried."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MalformedEvent(Exception):
    """An event body that cannot be a Stripe event. Never retried."""


class UnverifiedJob(Exception):
    """A job whose Stripe signature or ids the worker could not verify. Never retried, never
    dead-lettered: nothing in it is trusted."""
