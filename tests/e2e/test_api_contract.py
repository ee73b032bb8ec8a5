"""The API contract, fuzzed: Schemathesis drives every operation of GET /api/openapi.json against the
running system (gunicorn, worker, Firestore and Auth emulators, Redis, the Stripe sandbox).

Each generated request (bodies, path, query and header parameters; valid and invalid ones, the
coverage phase's boundary values) is sent three times: with no credentials, as a signed-in user (a
real ID token from the Auth emulator), and as a trusted backend (the development service key).
Every answer must pass every Schemathesis check but ``positive_data_acceptance``: no 5xx; the status,
content type, headers and body as documented; invalid data refused; a declared security requirement
enforced (a 2xx answer is re-sent without and with invalid credentials and must then be 401/403);
undeclared methods 405 with ``Allow``. ``positive_data_acceptance`` is off because the schema cannot
say everything the server checks (``reason`` must be printable, ids must be Firestore document ids;
a refusal of those is a documented 400).

In user mode, capture, release and extend are sent for a hold the fuzz user placed just before
(generated hold ids would only ever meet 404).

Money: the fuzzer is allowed to move it exactly as a client may. The fuzz user starts with 1,000
granted tokens so that spends and holds can succeed, and the service key grants to whichever
``userId`` Hypothesis invents. After the run, Firestore must hold exactly the ledger entries that
accepted (2xx, not replayed) spend, grant and capture answers named, with the amounts they
answered; every balance must have moved by exactly its new entries; no older entry changed. So no
refused, malformed or unauthenticated request moved a token, and no accepted one moved more or less
than it said. The number of requests sent is printed (docs/API_CONTRACT.md records a run).
``CONTRACT_MAX_EXAMPLES`` (default 30) bounds the examples per operation; ``CONTRACT_RANDOM=1`` draws
new ones each run instead of the fixed (deterministic) ones.
"""
from __future__ import annotations

import json
import os
import secrets
from collections import Counter

import pytest
import requests
import schemathesis

from core.adapters.catalog_file import load_catalog
from devstack.auth_emulator import sign_up
from web.openapi import document

MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "30"))
RANDOM = os.environ.get("CONTRACT_RANDOM") == "1"  # explore: new examples each run (CI runs the fixed ones)
SEED_TOKENS = 1000
MODES = ("anonymous", "user", "service")
MONEY = {("POST", "/api/tokens/spend"), ("POST", "/api/tokens/grant"), ("POST", "/api/tokens/holds/{hold_id}/capture")}
# Switched off, with the reason in the module docstring; every other Schemathesis check runs.
EXCLUDED = ["positive_data_acceptance"]

SENT: Counter = Counter()  # requests sent per mode (the checks' own probes are counted under "probes")
ACCEPTED: list[tuple[str, str, dict]] = []  # (method, path, body) of accepted money answers


class Contract:
    def __init__(self, system):
        self.system = system
        self.uid, self.token = sign_up(system.env["FIREBASE_AUTH_EMULATOR_HOST"],
                                       f"contract-{secrets.token_hex(4)}@example.com", "contract-fuzz-1")
        self.service_key = system.settings.service_api_keys[0]
        seeded = requests.post(f"{system.base_url}/api/tokens/grant", headers={"X-Service-Key": self.service_key},
                               json={"userId": self.uid, "amount": SEED_TOKENS, "reason": "contract seed",
                                     "idempotencyKey": f"seed-{self.uid}", "createAccount": True}, timeout=30)
        assert seeded.status_code == 200, seeded.text
        self.headers = {"anonymous": {}, "user": {"Authorization": f"Bearer {self.token}"},
                        "service": {"X-Service-Key": self.service_key}}
        self.session = requests.Session()
        self.session.hooks["response"].append(lambda r, *a, **k: SENT.update(["all"]))
        self.before = ledger(system)

    def fresh_hold(self) -> str:
        """A new open hold of the fuzz user, so capture, release and extend meet a real one."""
        placed = requests.post(f"{self.system.base_url}/api/tokens/holds", headers=self.headers["user"],
                               json={"amount": 1, "ttlSeconds": 120, "reason": "contract",
                                     "idempotencyKey": f"hold-{secrets.token_hex(8)}"}, timeout=30)
        assert placed.status_code == 201, placed.text
        SENT["holds placed"] += 1
        return placed.json()["holdId"]


def ledger(system) -> tuple[dict, dict]:
    db = system.deps.store.db
    users = {s.id: int((s.to_dict() or {}).get("tokenBalance") or 0) for s in db.collection("users").stream()}
    entries = {s.id: s.to_dict() for s in db.collection("transactions").stream()}
    return users, entries


@pytest.fixture(scope="module")
def contract(system):
    return Contract(system)


def _schema():
    """The document as the system serves it (test_the_served_document_is_this_one), loaded at import
    so that pytest lists one test per operation; requests go to the system's base URL."""
    loaded = schemathesis.openapi.from_dict(document(load_catalog()))
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, with_security_parameters=False, database="none",
                                    deterministic=not RANDOM)
    return loaded


schema = _schema()


def test_the_served_document_is_this_one(system):
    served = requests.get(f"{system.base_url}/api/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(document(system.deps.catalog)))


@schema.parametrize()
def test_every_operation_keeps_the_contract(case, contract):
    for mode in MODES:
        SENT[mode] += 1
        response = _call(case, contract, mode)
        if (case.method.upper(), case.path) in MONEY and 200 <= response.status_code < 300:
            ACCEPTED.append((case.method.upper(), case.path, response.json()))


def _call(case, contract, mode: str):
    from schemathesis.specs.openapi import checks as openapi_checks

    if mode == "user" and "hold_id" in (case.path_parameters or {}):
        case.path_parameters["hold_id"] = contract.fresh_hold()

    excluded = [getattr(openapi_checks, name) for name in EXCLUDED]
    return case.call_and_validate(base_url=contract.system.base_url, headers=contract.headers[mode],
                                  session=contract.session, excluded_checks=excluded, timeout=30)


def test_no_fuzzed_request_moved_a_token_but_the_accepted_ones(system, contract):
    assert SENT["user"] > 0, "the fuzzing test ran first (same module)"
    users_before, entries_before = contract.before
    users_after, entries_after = ledger(system)
    answered: dict[str, int] = {}
    for method, path, body in ACCEPTED:
        if body.get("replayed"):
            continue
        if path.endswith("/capture"):
            if body["entryId"] is not None:
                answered[body["entryId"]] = -body["captured"]
        else:
            answered[body["entryId"]] = body["amount"]
    grant_lots = {entry_id for entry_id, amount in answered.items() if amount > 0}
    new = {i: e for i, e in entries_after.items() if i not in entries_before}
    expired = {i for i, e in new.items() if e.get("type") == "expiry" and set(e.get("lots") or {}) <= grant_lots}
    assert set(new) - expired == set(answered), "ledger entries no accepted answer named (or the reverse)"
    for entry_id, amount in answered.items():
        assert new[entry_id]["amount"] == amount, (entry_id, new[entry_id], amount)
    for entry_id, entry in entries_before.items():
        kept = entries_after.get(entry_id)
        assert kept is not None and (kept["amount"], kept["userId"]) == (entry["amount"], entry["userId"]), entry_id
    moved = Counter()
    for entry in new.values():
        moved[entry["userId"]] += entry["amount"]
    for uid in set(users_before) | set(users_after):
        assert users_after.get(uid, 0) - users_before.get(uid, 0) == moved[uid], uid
    print(f"\ncontract fuzzing: {SENT['all']} requests sent: {SENT['anonymous']} generated cases x 3 modes, "
          f"{SENT['holds placed']} holds placed for them (the checks' own probes are not counted); "
          f"{len(ACCEPTED)} accepted money answers, {len(new)} new ledger entries")
