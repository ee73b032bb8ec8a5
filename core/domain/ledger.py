"""The ledger's vocabulary: entry types, their signs, the totals each one moves, and entries.

Every balance change is one append-only entry; ``tokenBalance`` is the sum of a user's
entry amounts, and each total is the sum of its entry types:

    totalTokensPurchased = purchase + subscription_allowance + refund + dispute_reversal
    totalTokensEarned    = grant + adjustment
    totalTokensSpent     = -(spend)
    totalTokensExpired   = -(expiry)

so tokenBalance == totalTokensPurchased + totalTokensEarned - totalTokensSpent
- totalTokensExpired always. Each entry that moves tokens records the lots it moved
(``lots``: lot id -> signed change; core/domain/lots.py).
Entry ids are deterministic (a payment, a refund's cumulative amount, a dispute, a caller's
idempotency key), so a redelivery finds the entry it would write and changes nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.domain.errors import InvalidRequest
from core.domain.ids import is_valid_doc_id

PURCHASED, EARNED, SPENT, EXPIRED = ("totalTokensPurchased", "totalTokensEarned", "totalTokensSpent",
                                     "totalTokensExpired")
TOTAL_NAMES = (PURCHASED, EARNED, SPENT, EXPIRED)
PURCHASE, ALLOWANCE, REFUND, DISPUTE_REVERSAL = "purchase", "subscription_allowance", "refund", "dispute_reversal"
GRANT, ADJUSTMENT, SPEND, EXPIRY = "grant", "adjustment", "spend", "expiry"


@dataclass(frozen=True)
class EntryType:
    name: str
    sign: int  # +1 credit, -1 debit, 0 either (adjustment)
    total: str
    total_factor: int  # how the amount moves the total (spent counts debits as positive)


ENTRY_TYPES = {t.name: t for t in (
    EntryType(PURCHASE, +1, PURCHASED, +1),
    EntryType(ALLOWANCE, +1, PURCHASED, +1),
    EntryType(REFUND, -1, PURCHASED, +1),
    EntryType(DISPUTE_REVERSAL, -1, PURCHASED, +1),
    EntryType(GRANT, +1, EARNED, +1),
    EntryType(ADJUSTMENT, 0, EARNED, +1),
    EntryType(SPEND, -1, SPENT, -1),
    EntryType(EXPIRY, -1, EXPIRED, -1),
)}
REVERSAL_TYPES = (REFUND, DISPUTE_REVERSAL)

MAX_SPEND = 100_000
MAX_GRANT = 1_000_000
MAX_REASON_CHARS = 200
MAX_KEY_CHARS = 128


@dataclass(frozen=True)
class Entry:
    """One ledger entry; ``refs`` are its references (event, payment, reason, actor...)."""
    id: str
    user_id: str
    type: str
    amount: int
    balance_after: int
    refs: Mapping[str, Any] = field(default_factory=dict)
    request_hash: str | None = None

    @property
    def key(self) -> str:
        return self.id


def total_delta(entry_type: str, amount: int) -> tuple[str, int]:
    t = ENTRY_TYPES[entry_type]
    return t.total, amount * t.total_factor


def payment_entry_id(entry_type: str, payment_id: str) -> str:
    """The one credit entry of a payment: ``purchase_<session>`` or ``subscription_<invoice>``."""
    return f"purchase_{payment_id}" if entry_type == PURCHASE else f"subscription_{payment_id}"


def refund_entry_id(payment_id: str, refunded_cents: int) -> str:
    return f"refund_{payment_id}_{refunded_cents}"


def dispute_entry_id(dispute_id: str) -> str:
    return f"dispute_{dispute_id}"


def expiry_entry_id(lot_id: str, expired_so_far: int) -> str:
    """An expiry of a lot, keyed by how much has expired from it in all (a held lot may expire in parts)."""
    return f"expiry_{hashlib.sha256(lot_id.encode()).hexdigest()[:32]}_{expired_so_far}"


def capture_entry_id(hold_id: str) -> str:
    return f"capture_{hold_id}"


def keyed_entry_id(kind: str, user_id: str, key: str) -> str:
    """A deterministic entry id for a caller's idempotency key, scoped to the user."""
    digest = hashlib.sha256(f"{user_id}\x00{key}".encode()).hexdigest()[:40]
    return f"{kind}_{digest}"


def request_hash(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# -- what a caller may ask for ------------------------------------------------------------
def positive_amount(value: object, maximum: int, field: str = "amount") -> int:
    """A whole number of tokens from 1 to ``maximum``; anything else is a 400."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{field} must be a whole number of tokens", field)
    if not 1 <= value <= maximum:
        raise InvalidRequest(f"{field} must be from 1 to {maximum}", field)
    return value


def reason_text(value: object, field: str = "reason") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} is required (a short text)", field)
    if len(value) > MAX_REASON_CHARS or not value.isprintable():
        raise InvalidRequest(f"{field} must be printable and at most {MAX_REASON_CHARS} characters", field)
    return value.strip()


def idempotency_key(value: object, field: str = "idempotencyKey") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS or not is_valid_doc_id(value):
        raise InvalidRequest(f"{field} is required: 1-{MAX_KEY_CHARS} printable characters, no '/'", field)
    return value
