"""firestore.rules, proven in the Firestore emulator.

The emulator runs the project's rules; requests go through its REST API carrying a user's
ID token (unsigned, emulator format: the emulator evaluates the rules as that uid), or no
token at all (unauthenticated). Seed data is written with `Authorization: Bearer owner`,
which bypasses the rules as the Admin SDK does in production. Every allow is checked for
its 200 and every deny for 403 PERMISSION_DENIED, and after a refused write the data is
read back (as owner) to show nothing changed.
"""
from __future__ import annotations

import datetime as dt

import pytest
import requests

from devstack.processes import clear_firestore, start_firestore
from tests.support.tokens import id_token

PROJECT = "demo-rules-test"
DB = f"projects/{PROJECT}/databases/(default)/documents"
OWNER = "owner"
ALICE, BOB, CAROL = "alice", "bob", "carol"  # carol has no account yet
ANON = None
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

ALICE_ACCOUNT = {
    "tokenBalance": 50, "totalTokensPurchased": 50, "totalTokensEarned": 0, "totalTokensSpent": 0,
    "subscription": {"plan": "pro", "allowance": 100, "status": "active", "eventCreated": 1767225600},
    "frozenBy": {"dp_1": {"amount": 500, "since": STAMP}}, "frozen": False, "debt": 0, "spendingBlocked": False, "createdAt": STAMP, "updatedAt": STAMP,
    "displayName": "Alice", "photoURL": "https://example.com/alice.png", "locale": "en",
    "marketingOptIn": False,
}
# Every server-owned collection the issue names, one it does not, and a user's subcollection.
SERVER_ONLY = ["purchases/cs_alice", "stripe_events/evt_alice", "security_alerts/purchase_rejected_cs_alice",
               "disputes/dp_1", "idempotency_keys/key_alice", "subscriptions/alice", "audit_runs/run_1",
               "payment_intents/pi_alice", "checkouts/cs_alice", "jobs/fulfil_x", "not_in_the_rules/doc_1",
               "users/alice/private/doc_1"]
SEED = {
    "users/alice": ALICE_ACCOUNT,
    "users/bob": {**ALICE_ACCOUNT, "tokenBalance": 7, "displayName": "Bob"},
    "transactions/purchase_cs_alice": {"userId": ALICE, "type": "purchase", "amount": 50, "balanceAfter": 50,
                                       "createdAt": STAMP, "source": "webhook"},
    "transactions/purchase_cs_bob": {"userId": BOB, "type": "purchase", "amount": 7, "balanceAfter": 7,
                                     "createdAt": STAMP, "source": "webhook"},
    **{path: {"userId": ALICE, "status": "fulfilled", "createdAt": STAMP} for path in SERVER_ONLY},
}


# --- Firestore REST values ------------------------------------------------------------------

class Ref(str):
    """A document reference value (for filters on __name__)."""


def enc(value) -> dict:
    if isinstance(value, Ref):
        return {"referenceValue": f"{DB}/{value}"}
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, dt.datetime):
        return {"timestampValue": value.isoformat().replace("+00:00", "Z")}
    if isinstance(value, dict):
        return {"mapValue": {"fields": fields(value)}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [enc(v) for v in value]}}
    raise TypeError(value)


def fields(data: dict) -> dict:
    return {k: enc(v) for k, v in data.items()}


def dec(value: dict):
    (kind, raw), = value.items()
    if kind == "integerValue":
        return int(raw)
    if kind == "timestampValue":
        return dt.datetime.fromisoformat(raw)
    if kind == "mapValue":
        return {k: dec(v) for k, v in raw.get("fields", {}).items()}
    if kind == "arrayValue":
        return [dec(v) for v in raw.get("values", [])]
    return raw


# --- A tiny REST client that acts as someone --------------------------------------------------

class Firestore:
    def __init__(self, host: str, http: requests.Session):
        self.host = host
        self.base = f"http://{host}/v1/{DB}"
        self.http = http

    @staticmethod
    def headers(who):
        if who is None:
            return {}
        return {"Authorization": f"Bearer {OWNER if who == OWNER else id_token(who, PROJECT)}"}

    def request(self, method, url, who, **kw):
        return self.http.request(method, url, headers=self.headers(who), timeout=10, **kw)

    def get(self, path, who):
        return self.request("GET", f"{self.base}/{path}", who)

    def patch(self, path, data, who, mask=None):
        """An update of the fields in `mask` (a field in mask but not in data is deleted);
        no mask replaces the whole document. Creates the document when it is missing."""
        params = [("updateMask.fieldPaths", f) for f in mask] if mask is not None else []
        return self.request("PATCH", f"{self.base}/{path}", who, params=params, json={"fields": fields(data)})

    def create(self, path, data, who):
        parent, doc_id = path.rsplit("/", 1)
        return self.request("POST", f"{self.base}/{parent}", who, params={"documentId": doc_id},
                            json={"fields": fields(data)})

    def delete(self, path, who):
        return self.request("DELETE", f"{self.base}/{path}", who)

    def query(self, collection_path, who, where: tuple | None = None, all_descendants=False):
        parent, _, collection = collection_path.rpartition("/")
        structured = {"from": [{"collectionId": collection, "allDescendants": all_descendants}]}
        if where:
            field, op, value = where
            structured["where"] = {"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": enc(value)}}
        url = f"{self.base}/{parent}:runQuery" if parent else f"{self.base}:runQuery"
        return self.request("POST", url, who, json={"structuredQuery": structured})

    def commit(self, writes, who):
        return self.request("POST", f"{self.base}:commit", who, json={"writes": writes})

    def name(self, path):
        return f"{DB}/{path}"

    def read(self, path) -> dict | None:
        """The stored document, read past the rules (owner)."""
        resp = self.get(path, OWNER)
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return {k: dec(v) for k, v in resp.json().get("fields", {}).items()}


def allowed(resp):
    assert resp.status_code == 200, f"expected the rules to allow it: {resp.status_code} {resp.text}"
    return resp.json()


def denied(resp):
    assert resp.status_code == 403, f"expected PERMISSION_DENIED: {resp.status_code} {resp.text}"
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED", resp.text


def found(query_resp) -> list[str]:
    """Document ids a successful runQuery answered."""
    return sorted(r["document"]["name"].rsplit("/", 1)[1] for r in allowed(query_resp) if "document" in r)


# --- Fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def emulator():
    service = start_firestore()  # loads ROOT/firestore.rules
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(autouse=True)
def _clean():
    """Replaces the package's autouse fixture, which needs Redis and the suite's shared emulator."""
    yield


@pytest.fixture(scope="module")
def _data():
    """One HTTP session for the module, and whether the emulator still holds exactly SEED:
    any request that may have written (not a read, not refused) makes the next test reseed."""
    state = {"fresh": False}

    def note_writes(resp, *args, **kwargs):
        if resp.request.method != "GET" and not resp.request.url.endswith(":runQuery") and resp.status_code != 403:
            state["fresh"] = False

    http = requests.Session()
    http.hooks["response"].append(note_writes)
    return state, http


@pytest.fixture
def fs(emulator, _data):
    state, http = _data
    client = Firestore(emulator.address, http)
    if not state["fresh"]:
        clear_firestore(emulator.address, PROJECT)
        allowed(client.commit([{"update": {"name": client.name(path), "fields": fields(data)}}
                               for path, data in SEED.items()], OWNER))
        state["fresh"] = True
    return client


def alice(fs):
    return fs.read("users/alice")


# --- users/{uid}: read ------------------------------------------------------------------------

def test_user_reads_own_account(fs):
    doc = allowed(fs.get("users/alice", ALICE))
    assert dec(doc["fields"]["tokenBalance"]) == 50


@pytest.mark.parametrize("who", [BOB, ANON], ids=["other user", "unauthenticated"])
def test_nobody_else_reads_an_account(fs, who):
    denied(fs.get("users/alice", who))


@pytest.mark.parametrize("who", [ALICE, ANON], ids=["user", "unauthenticated"])
def test_nobody_lists_the_users_collection(fs, who):
    denied(fs.query("users", who))
    denied(fs.request("GET", f"{fs.base}/users", who))


@pytest.mark.parametrize("where", [("__name__", "EQUAL", Ref("users/alice")), ("displayName", "EQUAL", "Alice")],
                         ids=["own document id", "own name"])
def test_user_cannot_query_users_even_filtered_to_self(fs, where):
    denied(fs.query("users", ALICE, where=where))


# --- users/{uid}: the origin document's smoke test -----------------------------------------------

def test_smoke_signed_in_user_update_of_own_token_balance_is_permission_denied(fs):
    """update({tokenBalance: 999999}) on the user's own document, as the web client would send it."""
    resp = fs.http.patch(f"{fs.base}/users/{ALICE}?updateMask.fieldPaths=tokenBalance",
                         headers={"Authorization": f"Bearer {id_token(ALICE, PROJECT)}"},
                         json={"fields": {"tokenBalance": {"integerValue": "999999"}}}, timeout=10)
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED"
    assert fs.read(f"users/{ALICE}")["tokenBalance"] == 50


# --- users/{uid}: server-owned fields ----------------------------------------------------------

SERVER_FIELD_CHANGES = {
    "tokenBalance": 999999, "totalTokensEarned": 1, "totalTokensPurchased": 51, "totalTokensSpent": -5,
    "subscription": {"plan": "enterprise", "allowance": 100000, "status": "active"},
    "frozenBy": {}, "frozen": True, "debt": -100, "spendingBlocked": True,
    "updatedAt": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
    "createdAt": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
}


@pytest.mark.parametrize("field,value", SERVER_FIELD_CHANGES.items(), ids=SERVER_FIELD_CHANGES)
def test_user_cannot_change_a_server_owned_field_of_own_account(fs, field, value):
    denied(fs.patch("users/alice", {field: value}, ALICE, mask=[field]))
    assert alice(fs) == ALICE_ACCOUNT


@pytest.mark.parametrize("field", ["tokenBalance", "frozenBy", "frozenBy.dp_1", "debt", "subscription", "updatedAt"])
def test_user_cannot_remove_a_server_owned_field(fs, field):
    denied(fs.patch("users/alice", {}, ALICE, mask=[field]))
    assert alice(fs) == ALICE_ACCOUNT


@pytest.mark.parametrize("field,value", [("isAdmin", True), ("tokenBalanceBonus", 100), ("role", "admin")])
def test_user_cannot_add_a_field_outside_the_profile(fs, field, value):
    denied(fs.patch("users/alice", {field: value}, ALICE, mask=[field]))
    assert alice(fs) == ALICE_ACCOUNT


def test_user_cannot_change_subscription_subfield(fs):
    denied(fs.patch("users/alice", {"subscription": {"allowance": 100000}}, ALICE, mask=["subscription.allowance"]))
    assert alice(fs) == ALICE_ACCOUNT


@pytest.mark.parametrize("field", ["tokenBalance", "totalTokensPurchased", "debt"])
def test_user_cannot_rewrite_an_integer_counter_as_an_equal_float(fs, field):
    """The rules' diff() sees 50 == 50.0 as unchanged; the type change is caught separately."""
    denied(fs.patch("users/alice", {field: float(ALICE_ACCOUNT[field])}, ALICE, mask=[field]))
    assert type(alice(fs)[field]) is int


@pytest.mark.parametrize("path", ["subscription.allowance", "subscription.eventCreated", "frozenBy.dp_1.amount"])
def test_user_cannot_rewrite_a_nested_integer_as_an_equal_float(fs, path):
    top, *rest = path.split(".")
    value = ALICE_ACCOUNT[top]
    for key in rest[:-1]:
        value = value[key]
    patch = nested = {}
    for key in path.split(".")[:-1]:
        nested[key] = {}
        nested = nested[key]
    nested[rest[-1]] = float(value[rest[-1]])
    denied(fs.patch("users/alice", patch, ALICE, mask=[path]))
    assert alice(fs) == ALICE_ACCOUNT


def test_writing_a_server_field_with_its_current_value_is_an_allowed_no_op(fs):
    """Rules see the document before and after, not the update mask: a write that changes
    nothing changes nothing, so it is allowed. It cannot move a balance."""
    allowed(fs.patch("users/alice", {"tokenBalance": 50}, ALICE, mask=["tokenBalance"]))
    assert alice(fs) == ALICE_ACCOUNT


def test_profile_edit_bundled_with_a_balance_change_is_refused_whole(fs):
    denied(fs.patch("users/alice", {"displayName": "Eve", "tokenBalance": 999999}, ALICE,
                    mask=["displayName", "tokenBalance"]))
    assert alice(fs) == ALICE_ACCOUNT


def test_full_overwrite_that_drops_server_fields_is_refused(fs):
    denied(fs.patch("users/alice", {"displayName": "Alice 2"}, ALICE))  # no mask: replaces the document
    assert alice(fs) == ALICE_ACCOUNT


def test_full_overwrite_keeping_every_server_field_may_change_the_profile(fs):
    allowed(fs.patch("users/alice", {**ALICE_ACCOUNT, "displayName": "Alice 2"}, ALICE))
    assert alice(fs) == {**ALICE_ACCOUNT, "displayName": "Alice 2"}


def test_balance_increment_transform_is_refused(fs):
    denied(fs.commit([{"transform": {"document": fs.name("users/alice"), "fieldTransforms": [
        {"fieldPath": "tokenBalance", "increment": enc(1000)}]}}], ALICE))
    assert alice(fs) == ALICE_ACCOUNT


def test_server_timestamp_transform_on_updated_at_is_refused(fs):
    denied(fs.commit([{"update": {"name": fs.name("users/alice"), "fields": fields({"locale": "fr"})},
                       "updateMask": {"fieldPaths": ["locale"]},
                       "updateTransforms": [{"fieldPath": "updatedAt", "setToServerValue": "REQUEST_TIME"}]}], ALICE))
    assert alice(fs) == ALICE_ACCOUNT


def test_batch_with_one_forbidden_write_commits_nothing(fs):
    denied(fs.commit([
        {"update": {"name": fs.name("users/alice"), "fields": fields({"displayName": "Alice 2"})},
         "updateMask": {"fieldPaths": ["displayName"]}},
        {"update": {"name": fs.name("transactions/gift"), "fields": fields({"userId": ALICE, "amount": 1000})}},
    ], ALICE))
    assert alice(fs) == ALICE_ACCOUNT
    assert fs.read("transactions/gift") is None


# --- users/{uid}: profile edits ----------------------------------------------------------------

VALID_PROFILE = {
    "displayName": ["Alice B.", "", "x" * 100, "Ålice 🙂", "🙂" * 50],  # 🙂 is 2 UTF-16 units
    "photoURL": ["https://cdn.example.com/a.png", "https://" + "a" * 2040],
    "locale": ["fr-CA", "x" * 35],
    "marketingOptIn": [True, False],
}
INVALID_PROFILE = {
    "displayName": ["x" * 101, "🙂" * 51, 42, True, None, ["Alice"], {"first": "Alice"}],
    "photoURL": ["http://example.com/a.png", "https://", "ftp://example.com/a", "javascript:alert(1)",
                 "https://" + "a" * 2041, " https://example.com/a.png", 7],
    "locale": ["x" * 36, 1, False],
    "marketingOptIn": ["yes", 1, None],
}


def _cases(table):
    return [pytest.param(f, v, id=f"{f}={str(v)[:20]}{'...' if len(str(v)) > 20 else ''}({type(v).__name__})")
            for f, values in table.items() for v in values]


@pytest.mark.parametrize("field,value", _cases(VALID_PROFILE))
def test_user_updates_a_profile_field_of_own_account(fs, field, value):
    allowed(fs.patch("users/alice", {field: value}, ALICE, mask=[field]))
    assert alice(fs) == {**ALICE_ACCOUNT, field: value}


@pytest.mark.parametrize("field,value", _cases(INVALID_PROFILE))
def test_invalid_profile_value_is_refused(fs, field, value):
    denied(fs.patch("users/alice", {field: value}, ALICE, mask=[field]))
    assert alice(fs) == ALICE_ACCOUNT


def test_user_updates_all_profile_fields_at_once(fs):
    profile = {"displayName": "A", "photoURL": "https://x.test/p", "locale": "de", "marketingOptIn": True}
    allowed(fs.patch("users/alice", profile, ALICE, mask=list(profile)))
    assert alice(fs) == {**ALICE_ACCOUNT, **profile}


def test_user_clears_a_profile_field(fs):
    allowed(fs.patch("users/alice", {}, ALICE, mask=["photoURL"]))
    assert "photoURL" not in alice(fs)


def test_a_stored_invalid_profile_value_does_not_block_other_edits(fs):
    """Only the fields a write changes are validated: a too-long name the server stored
    (say, copied from a sign-in provider) does not lock the user out of their profile."""
    allowed(fs.patch("users/alice", {"displayName": "x" * 150}, OWNER, mask=["displayName"]))
    allowed(fs.patch("users/alice", {"locale": "fr"}, ALICE, mask=["locale"]))
    assert alice(fs)["locale"] == "fr"


@pytest.mark.parametrize("who", [BOB, ANON], ids=["other user", "unauthenticated"])
def test_nobody_else_edits_a_profile(fs, who):
    denied(fs.patch("users/alice", {"displayName": "pwned"}, who, mask=["displayName"]))
    assert alice(fs) == ALICE_ACCOUNT


# --- users/{uid}: create and delete --------------------------------------------------------------

def test_user_creates_own_account_with_profile_fields_only(fs):
    profile = {"displayName": "Carol", "locale": "en", "marketingOptIn": True}
    allowed(fs.create("users/carol", profile, CAROL))
    assert fs.read("users/carol") == profile


def test_user_creates_own_account_through_an_update(fs):
    allowed(fs.patch("users/carol", {"displayName": "Carol"}, CAROL, mask=["displayName"]))
    assert fs.read("users/carol") == {"displayName": "Carol"}


@pytest.mark.parametrize("extra", [{"tokenBalance": 0}, {"tokenBalance": 1000000}, {"frozen": False},
                                   {"createdAt": STAMP}, {"subscription": {"plan": "pro"}}],
                         ids=lambda e: next(iter(e)))
def test_user_cannot_create_own_account_with_server_fields(fs, extra):
    denied(fs.create("users/carol", {"displayName": "Carol", **extra}, CAROL))
    denied(fs.patch("users/carol", {"displayName": "Carol", **extra}, CAROL, mask=["displayName", *extra]))
    assert fs.read("users/carol") is None


@pytest.mark.parametrize("field,value", [("displayName", "x" * 101), ("photoURL", "http://a.test/p"),
                                         ("locale", "x" * 36), ("marketingOptIn", "yes")])
def test_user_cannot_create_own_account_with_an_invalid_profile(fs, field, value):
    denied(fs.create("users/carol", {field: value}, CAROL))
    assert fs.read("users/carol") is None


@pytest.mark.parametrize("who", [BOB, ANON], ids=["other user", "unauthenticated"])
def test_nobody_creates_an_account_for_someone_else(fs, who):
    denied(fs.create("users/carol", {"displayName": "Carol"}, who))
    assert fs.read("users/carol") is None


@pytest.mark.parametrize("who", [ALICE, BOB, ANON], ids=["owner of the account", "other user", "unauthenticated"])
def test_nobody_deletes_an_account(fs, who):
    denied(fs.delete("users/alice", who))
    assert alice(fs) == ALICE_ACCOUNT


# --- transactions: the ledger ------------------------------------------------------------------

def test_user_reads_own_ledger_entry(fs):
    doc = allowed(fs.get("transactions/purchase_cs_alice", ALICE))
    assert dec(doc["fields"]["amount"]) == 50


@pytest.mark.parametrize("who", [BOB, ANON], ids=["other user", "unauthenticated"])
def test_nobody_else_reads_a_ledger_entry(fs, who):
    denied(fs.get("transactions/purchase_cs_alice", who))


def test_reading_a_missing_ledger_entry_is_refused_rather_than_not_found(fs):
    denied(fs.get("transactions/no_such_entry", ALICE))


def test_user_queries_own_ledger_filtered_on_own_user_id(fs):
    assert found(fs.query("transactions", ALICE, where=("userId", "EQUAL", ALICE))) == ["purchase_cs_alice"]
    assert found(fs.query("transactions", BOB, where=("userId", "EQUAL", BOB))) == ["purchase_cs_bob"]


def test_ledger_query_without_the_user_id_filter_is_refused(fs):
    denied(fs.query("transactions", ALICE))
    denied(fs.request("GET", f"{fs.base}/transactions", ALICE))
    denied(fs.query("transactions", ALICE, where=("type", "EQUAL", "purchase")))


@pytest.mark.parametrize("where", [("userId", "EQUAL", BOB), ("userId", "IN", [ALICE, BOB]),
                                   ("userId", "NOT_EQUAL", ALICE)], ids=["other's id", "in list", "not own"])
def test_ledger_query_reaching_other_users_entries_is_refused(fs, where):
    denied(fs.query("transactions", ALICE, where=where))


def test_unauthenticated_ledger_query_is_refused(fs):
    denied(fs.query("transactions", ANON, where=("userId", "EQUAL", ALICE)))


def test_collection_group_query_on_the_ledger_is_refused(fs):
    denied(fs.query("transactions", ALICE, where=("userId", "EQUAL", ALICE), all_descendants=True))


LEDGER_ENTRY = {"userId": ALICE, "type": "grant", "amount": 1000000, "balanceAfter": 1000050}


@pytest.mark.parametrize("who", [ALICE, BOB, ANON], ids=["its owner", "other user", "unauthenticated"])
def test_nobody_writes_the_ledger(fs, who):
    denied(fs.create("transactions/gift", LEDGER_ENTRY, who))
    denied(fs.patch("transactions/gift", LEDGER_ENTRY, who))
    denied(fs.patch("transactions/purchase_cs_alice", {"amount": 5000}, who, mask=["amount"]))
    denied(fs.patch("transactions/purchase_cs_bob", {"userId": ALICE}, who, mask=["userId"]))
    denied(fs.delete("transactions/purchase_cs_alice", who))
    assert fs.read("transactions/gift") is None
    assert fs.read("transactions/purchase_cs_alice") == SEED["transactions/purchase_cs_alice"]
    assert fs.read("transactions/purchase_cs_bob") == SEED["transactions/purchase_cs_bob"]


# --- everything else: server only --------------------------------------------------------------

WHO = [pytest.param(ALICE, id="user named in the document"), pytest.param(ANON, id="unauthenticated")]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("path", SERVER_ONLY)
def test_server_only_documents_cannot_be_read(fs, path, who):
    denied(fs.get(path, who))


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("path", SERVER_ONLY)
def test_server_only_collections_cannot_be_queried_even_filtered_to_own_user_id(fs, path, who):
    denied(fs.query(path.rsplit("/", 1)[0], who, where=("userId", "EQUAL", ALICE)))


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("path", SERVER_ONLY)
def test_server_only_documents_cannot_be_created_updated_or_deleted(fs, path, who):
    new = path.rsplit("/", 1)[0] + "/new_doc"
    denied(fs.create(new, {"userId": ALICE, "status": "fulfilled"}, who))
    denied(fs.patch(path, {"status": "refunded"}, who, mask=["status"]))
    denied(fs.patch(path, {"userId": ALICE}, who))
    denied(fs.delete(path, who))
    assert fs.read(new) is None
    assert fs.read(path) == SEED[path]


def test_owner_token_bypasses_the_rules(fs):
    """The server's path (Admin SDK) is not limited by the rules: the seeding relies on it."""
    allowed(fs.patch("users/alice", {"tokenBalance": 60}, OWNER, mask=["tokenBalance"]))
    assert alice(fs)["tokenBalance"] == 60
    assert found(fs.query("transactions", OWNER)) == ["purchase_cs_alice", "purchase_cs_bob"]
