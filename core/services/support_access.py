"""Who is at the support console: sign-in to a Firebase session cookie, the check every
request makes, the CSRF token every action carries, and who a customer is: ``find_user``
turns what they tell support (an email, or a uid from a log line) into a uid — an email is
looked up in Firebase Auth; a uid must be an account in Firebase Auth or in Firestore.

The console's pages are rendered on the server, so the server must know the browser's user
on a plain page load: the page's script signs in with Firebase Auth (as the purchase page
does) and sends the fresh ID token once, as ``Authorization: Bearer``, to ``sign_in``; the
answer is a Firebase session cookie (HttpOnly, SameSite=Strict, path /admin) that the browser
then sends with every console request. Sign-in needs a recent sign-in (the ID token's
``auth_time`` within 5 minutes, Firebase's advice for minting session cookies), so a stolen
old ID token cannot open a session.

``operator_for`` runs on *every* console request, pages and actions alike: it verifies the
cookie (signature, expiry, revocation, the account still enabled), reads the account as it is
now and lets it in only if it is support staff (core/domain/operators.py: the ``admin`` custom
claim, or the ``ADMIN_UIDS`` / verified ``ADMIN_EMAILS`` allow-list). No cookie or a bad one is
Unauthorized (401); a valid session of anyone else is Forbidden (403). A session is minted for
any account that signs in (it proves who the person is, nothing more), so taking a claim away
takes effect on the next request, and granting one needs no new sign-in.

A cookie travels with cross-site requests a browser makes on its own, so every action must
also carry ``csrf_token(cookie)``: a hash of the session cookie, which a page of another site
can neither read (HttpOnly) nor compute. The web tier also refuses a foreign ``Origin``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from core.deps import Deps
from core.domain.errors import Forbidden, InvalidRequest, Unauthorized, UnknownUser
from core.domain.ids import is_valid_doc_id
from core.domain.operators import Operator, Person, is_support
from core.services.auth import bearer_token

RECENT_SIGN_IN_SECONDS = 300
MAX_QUERY_CHARS = 320
MAX_COOKIE_CHARS = 8192
_CSRF_CONTEXT = b"tokenbank support console csrf\x00"


@dataclass(frozen=True)
class Session:
    cookie: str
    max_age: int  # seconds
    person: Person
    support: bool


def sign_in(deps: Deps, authorization: str | None) -> Session:
    """A session cookie for the ID token's account (Unauthorized if the token is bad or the
    sign-in is not recent)."""
    token = bearer_token(authorization)
    claims = deps.identity.id_token_claims(token)
    uid, auth_time = claims.get("uid") or claims.get("sub"), claims.get("auth_time")
    if not is_valid_doc_id(uid):
        raise Unauthorized("token subject is not a valid user id")
    if isinstance(auth_time, bool) or not isinstance(auth_time, (int, float)) or \
            deps.clock() - auth_time > RECENT_SIGN_IN_SECONDS:
        raise Unauthorized("sign in again: a console session needs a sign-in from the last 5 minutes")
    seconds = deps.settings.admin_session_seconds
    cookie = deps.identity.create_session(token, seconds)
    person = deps.identity.person(uid)
    if person is None:
        raise Unauthorized("no such account")
    return Session(cookie, seconds, person, _is_support(deps, person))


def operator_for(deps: Deps, cookie: str | None) -> Operator:
    """The operator behind this request's session cookie; Unauthorized or Forbidden otherwise."""
    if not cookie:
        raise Unauthorized("sign in to use the support console")
    if len(cookie) > MAX_COOKIE_CHARS:
        raise Unauthorized("session cookie too long")
    person = deps.identity.session_person(cookie)
    if not _is_support(deps, person):
        raise Forbidden("this account has no support access")
    return Operator(person.uid, person.email)


def _is_support(deps: Deps, person: Person) -> bool:
    return is_support(person, deps.settings.admin_uids, deps.settings.admin_emails)


def csrf_token(cookie: str) -> str:
    digest = hashlib.sha256(_CSRF_CONTEXT + cookie.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_ok(cookie: str | None, presented: object) -> bool:
    if not cookie or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(csrf_token(cookie).encode(), presented.encode())


def find_user(deps: Deps, query: object) -> str:
    """The uid for an email or a uid (InvalidRequest for an empty or malformed query,
    UnknownUser when nobody matches)."""
    text = query.strip() if isinstance(query, str) else ""
    if not text or len(text) > MAX_QUERY_CHARS or not text.isprintable():
        raise InvalidRequest("enter an email address or a user id", "q")
    if "@" in text:
        person = deps.identity.person_by_email(text)
        if person is None:
            raise UnknownUser(f"no account with the email {text}")
        return person.uid
    if not is_valid_doc_id(text):
        raise InvalidRequest("that is neither an email address nor a valid user id", "q")
    if deps.identity.person(text) is None and deps.store.get_user(text) is None:
        raise UnknownUser(f"no account with the user id {text}")
    return text
