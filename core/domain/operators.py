"""Who may use the support console, and how an operator is named in what they change.

A ``Person`` is an account as Firebase Auth knows it *now* (read again on every request, so a
revoked claim or a disabled account takes effect at once). A person is support staff when
the account is enabled and either carries the custom claim ``admin: true``, or its uid is in
the configured allow-list, or its email is — and then only a verified email counts, since
anyone can sign up with an address they do not own. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

ADMIN_CLAIM = "admin"


@dataclass(frozen=True)
class Person:
    uid: str
    email: str | None = None
    email_verified: bool = False
    disabled: bool = False
    claims: Mapping[str, Any] = field(default_factory=dict)  # the account's custom claims
    created_at: float | None = None  # unix seconds
    last_sign_in_at: float | None = None


@dataclass(frozen=True)
class Operator:
    """A person the console let in: the name their changes carry."""
    uid: str
    email: str | None

    @property
    def actor(self) -> str:
        """The ledger entry's ``actor`` (the CLI writes ``operator:NAME`` the same way)."""
        return f"operator:{self.email or self.uid}"

    def log_fields(self) -> dict:
        return {"operator": self.email or self.uid, "operatorUid": self.uid, "operatorEmail": self.email}


def normalised_emails(emails: Iterable[str]) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in emails if e.strip())


def is_support(person: Person, admin_uids: Iterable[str] = (), admin_emails: Iterable[str] = ()) -> bool:
    if person.disabled:
        return False
    if person.claims.get(ADMIN_CLAIM) is True:
        return True
    if person.uid in set(admin_uids):
        return True
    email = (person.email or "").strip().lower()
    return bool(email) and person.email_verified and email in normalised_emails(admin_emails)
