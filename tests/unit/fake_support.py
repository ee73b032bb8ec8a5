"""The support console's ports on dicts: the Records reads and ops_log writes it adds
(``FakeSupportReads``, mixed into FakeLedgerStore) and Firebase Auth (``FakeIdentity``).

Only the queries' filters, order and bounds, as core/adapters/firestore_support.py and
core/adapters/firebase_identity.py make them; no rule of the console here.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from core.domain.errors import Unauthorized
from core.domain.operators import Person

_PRIVATE_EVENT_FIELDS = ("payload", "signature")


def _unix(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else 0.0


class FakeSupportReads:
    docs: dict

    def _mine(self, collection: str, user_id: str) -> list[dict]:
        return [{"id": k, **copy.deepcopy(v)} for k, v in self.docs.setdefault(collection, {}).items()
                if v.get("userId") == user_id]

    @staticmethod
    def _newest(docs: list[dict], field: str, limit: int) -> list[dict]:
        return sorted(docs, key=lambda d: _unix(d.get(field)), reverse=True)[:limit]

    def user_purchases(self, user_id: str, limit: int) -> list[dict]:
        return self._newest(self._mine("purchases", user_id), "updatedAt", limit)

    def user_events(self, user_id: str, limit: int) -> list[dict]:
        events = [{k: v for k, v in e.items() if k not in _PRIVATE_EVENT_FIELDS}
                  for e in self._mine("stripe_events", user_id)]
        return self._newest(events, "receivedAt", limit)

    def user_alerts(self, user_id: str, limit: int) -> list[dict]:
        return self._newest(self._mine("security_alerts", user_id)[:limit], "createdAt", limit)

    def user_disputes(self, user_id: str, limit: int) -> list[dict]:
        return self._newest(self._mine("disputes", user_id)[:limit], "since", limit)

    def user_ops_log(self, user_id: str, limit: int) -> list[dict]:
        return self._newest(self._mine("ops_log", user_id), "createdAt", limit)

    def start_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> bool:
        log = self.docs.setdefault("ops_log", {})
        if entry_id in log:
            return False
        log[entry_id] = {**copy.deepcopy(dict(fields)), "createdAt": self.uow.now()}
        return True

    def get_ops_log(self, entry_id: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.docs.setdefault("ops_log", {}).get(entry_id))

    def finish_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> None:
        self._maybe_fail("finish_ops_log")
        self.docs.setdefault("ops_log", {}).setdefault(entry_id, {}).update(
            {**copy.deepcopy(dict(fields)), "finishedAt": self.uow.now()})

    def _since(self, collection: str, field: str, since: float, limit: int, **equal) -> list[dict]:
        found = [{"id": k, **copy.deepcopy(v)} for k, v in self.docs.setdefault(collection, {}).items()
                 if isinstance(v.get(field), datetime) and v[field].timestamp() >= since
                 and all(v.get(f) in want for f, want in equal.items())]
        return self._newest(found, field, limit)

    def events_since(self, since: float, limit: int) -> list[dict]:
        return [{k: e.get(k) for k in ("id", "status", "type", "receivedAt", "userId")}
                for e in self._since("stripe_events", "receivedAt", since, limit)]

    def credits_since(self, since: float, types: tuple[str, ...], limit: int) -> list[dict]:
        return self._since("transactions", "createdAt", since, limit, type=types)

    def alerts_since(self, since: float, limit: int) -> list[dict]:
        return self._since("security_alerts", "createdAt", since, limit)


class FakeIdentity:
    """Firebase Auth: accounts, ID tokens (claims a test sets) and session cookies it minted.

    ``add(person, password=None)`` makes an account; ``sign_in(uid, auth_time)`` answers an ID
    token for it; ``revoke(uid)`` revokes every session minted before; ``calls`` counts the
    account reads (each console request reads the account once)."""

    def __init__(self) -> None:
        self.people: dict[str, Person] = {}
        self.tokens: dict[str, dict] = {}
        self.cookies: dict[str, tuple[str, int]] = {}  # cookie -> (uid, generation when minted)
        self.generation: dict[str, int] = {}
        self.calls = 0
        self._seq = itertools.count(1)

    def add(self, uid: str, email: str | None = None, **fields: Any) -> Person:
        self.people[uid] = Person(uid, email, **fields)
        return self.people[uid]

    def update(self, uid: str, **fields: Any) -> None:
        self.people[uid] = replace(self.people[uid], **fields)

    def sign_in(self, uid: str, auth_time: float) -> str:
        token = f"idtoken-{next(self._seq)}"
        self.tokens[token] = {"uid": uid, "sub": uid, "auth_time": auth_time, "email": self.people[uid].email}
        return token

    def revoke(self, uid: str) -> None:
        self.generation[uid] = self.generation.get(uid, 0) + 1

    # -- the Identity port ---------------------------------------------------------------
    def id_token_claims(self, id_token: str) -> Mapping[str, Any]:
        if id_token not in self.tokens:
            raise Unauthorized("invalid token: InvalidIdTokenError")
        return dict(self.tokens[id_token])

    def create_session(self, id_token: str, seconds: int) -> str:
        uid = self.id_token_claims(id_token)["uid"]
        cookie = f"session-{next(self._seq)}-{uid}"
        self.cookies[cookie] = (uid, self.generation.get(uid, 0))
        return cookie

    def session_person(self, cookie: str) -> Person:
        if cookie not in self.cookies:
            raise Unauthorized("invalid session: InvalidSessionCookieError")
        uid, generation = self.cookies[cookie]
        person = self.person(uid)
        if person is None:
            raise Unauthorized("no such account")
        if person.disabled:
            raise Unauthorized("account disabled")
        if generation < self.generation.get(uid, 0):
            raise Unauthorized("session revoked")
        return person

    def person(self, uid: str) -> Person | None:
        self.calls += 1
        return self.people.get(uid)

    def person_by_email(self, email: str) -> Person | None:
        return next((p for p in self.people.values() if (p.email or "").lower() == email.lower()), None)

    def set_admin_claim(self, uid: str, admin: bool) -> Person:
        claims = {k: v for k, v in self.people[uid].claims.items() if k != "admin"}
        self.update(uid, claims={**claims, "admin": True} if admin else claims)
        return self.people[uid]
