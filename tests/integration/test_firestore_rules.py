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

DAVE = "dave"  # an account written before lots and holds: it has none of their fields
EPOCH = 1767225600  # STAMP in unix seconds
ALICE_ACCOUNT = {
    "tokenBalance": 50, "totalTokensPurchased": 50, "totalTokensEarned": 0, "totalTokensSpent": 0,
    "totalTokensExpired": 5, "eventSeq": 12,
    "subscription": {"plan": "pro", "allowance": 100, "status": "active", "eventCreated": 1767225600},
    "frozenBy": {"dp_1": {"amount": 500, "since": STAMP}}, "frozen": False, "debt": 0, "spendingBlocked": False, "createdAt": STAMP, "updatedAt": STAMP,
    "lots": {"lot_alice_1": {"source": "purchase", "amount": 50, "remaining": 30, "expiresAt": None, "createdAt": EPOCH},
             "lot_alice_2": {"source": "promo", "amount": 25, "remaining": 20, "expiresAt": EPOCH + 86400,
                             "createdAt": EPOCH}},
    "holds": {"hold_alice_1": {"amount": 20, "status": "open", "expiresAt": EPOCH + 900, "createdAt": EPOCH}},
    "displayName": "Alice", "photoURL": "https://example.com/alice.png", "locale": "en",
    "marketingOptIn": False,
}
LEGACY_ACCOUNT = {k: v for k, v in ALICE_ACCOUNT.items() if k not in ("totalTokensExpired", "lots", "holds", "eventSeq")}


def lot(user, **over):
    return {"userId": user, "source": "purchase", "amount": 50, "remaining": 30, "expiresAt": None,
            "createdAt": EPOCH, "costCents": 500, "currency": "usd", "paymentId": f"pi_{user}",
            "entryId": f"purchase_cs_{user}", "expired": 0, "rolledOver": 0, **over}


def hold(user, **over):
    return {"userId": user, "amount": 20, "status": "open", "expiresAt": EPOCH + 900, "reason": "spend",
            "idempotencyKey": f"key_{user}", "requestHash": "sha256:00", "history": [{"status": "open", "at": EPOCH}],
            "captured": 0, "released": 0, "entryId": None, "createdAt": EPOCH, "updatedAt": EPOCH, **over}


LOTS_AND_HOLDS = {
    "lots/lot_alice_1": lot(ALICE),
    "lots/lot_alice_2": lot(ALICE, source="promo", amount=25, remaining=20, expiresAt=EPOCH + 86400, costCents=0,
                            paymentId=None, entryId="promo_alice"),
    "lots/lot_bob_1": lot(BOB, amount=7, remaining=7),
    "holds/hold_alice_1": hold(ALICE),
    "holds/hold_bob_1": hold(BOB, amount=3),
}
# Every server-owned collection the issue names, one it does not, and a user's subcollection.
SERVER_ONLY = ["purchases/cs_alice", "stripe_events/evt_alice", "security_alerts/purchase_rejected_cs_alice",
               "disputes/dp_1", "idempotency_keys/key_alice", "subscriptions/alice", "audit_runs/run_1",
               "payment_intents/pi_alice", "checkouts/cs_alice", "jobs/fulfil_x", "not_in_the_rules/doc_1",
               "users/alice/private/doc_1",
               # outgoing events: the outbox, its cursors, the endpoints (with their secrets), deliveries
               "outbox/ev_alice_1", "outbox_cursors/alice", "webhook_endpoints/ep_alice",
               "webhook_subscriptions/enabled", "deliveries/ep_alice_ev_1"]
SEED = {
    "users/alice": ALICE_ACCOUNT,
    "users/bob": {**ALICE_ACCOUNT, "tokenBalance": 7, "displayName": "Bob", "totalTokensExpired": 0,
                  "lots": {"lot_bob_1": {"source": "purchase", "amount": 7, "remaining": 7, "expiresAt": None,
                                         "createdAt": EPOCH}}, "holds": {}},
    "users/dave": LEGACY_ACCOUNT,
    "transactions/purchase_cs_alice": {"userId": ALICE, "type": "purchase", "amount": 50, "balanceAfter": 50,
                                       "createdAt": STAMP, "source": "webhook"},
    "transactions/purchase_cs_bob": {"userId": BOB, "type": "purchase", "amount": 7, "balanceAfter": 7,
                                     "createdAt": STAMP, "source": "webhook"},
    **LOTS_AND_HOLDS,
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
    "totalTokensExpired": 0, "lots": {}, "holds": {}, "eventSeq": 0,
    "subscription": {"plan": "enterprise", "allowance": 100000, "status": "active"},
    "frozenBy": {}, "frozen": True, "debt": -100, "spendingBlocked": True,
    "updatedAt": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
    "createdAt": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
}


@pytest.mark.parametrize("field,value", SERVER_FIELD_CHANGES.items(), ids=SERVER_FIELD_CHANGES)
def test_user_cannot_change_a_server_owned_field_of_own_account(fs, field, value):
    denied(fs.patch("users/alice", {field: value}, ALICE, mask=[field]))
    assert alice(fs) == ALICE_ACCOUNT


@pytest.mark.parametrize("field", ["tokenBalance", "frozenBy", "frozenBy.dp_1", "debt", "subscription", "updatedAt",
                                   "totalTokensExpired", "lots", "lots.lot_alice_1", "lots.lot_alice_2.expiresAt",
                                   "holds", "holds.hold_alice_1", "eventSeq"])
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


@pytest.mark.parametrize("field", ["tokenBalance", "totalTokensPurchased", "debt", "totalTokensExpired", "eventSeq"])
def test_user_cannot_rewrite_an_integer_counter_as_an_equal_float(fs, field):
    """The rules' diff() sees 50 == 50.0 as unchanged; the type change is caught separately."""
    denied(fs.patch("users/alice", {field: float(ALICE_ACCOUNT[field])}, ALICE, mask=[field]))
    assert type(alice(fs)[field]) is int


@pytest.mark.parametrize("path", ["subscription.allowance", "subscription.eventCreated", "frozenBy.dp_1.amount",
                                  "lots.lot_alice_1.remaining", "lots.lot_alice_2.expiresAt",
                                  "holds.hold_alice_1.amount", "holds.hold_alice_1.expiresAt"])
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


# --- users/{uid}: totalTokensExpired, lots and holds (server-owned) ------------------------------

LOT_AND_HOLD_EDITS = {
    "lots.lot_alice_1.remaining": 1000000,   # refill a lot
    "lots.lot_alice_2.expiresAt": None,      # make an expiring lot last forever
    "lots.lot_alice_2.source": "purchase",
    "lots.lot_free": {"source": "grant", "amount": 1000000, "remaining": 1000000, "expiresAt": None},
    "holds.hold_alice_1.status": "released",  # release one's own hold
    "holds.hold_alice_1.amount": 0,
    "holds.hold_free": {"amount": 1, "status": "captured", "expiresAt": None},
}


@pytest.mark.parametrize("path,value", LOT_AND_HOLD_EDITS.items(), ids=LOT_AND_HOLD_EDITS)
def test_user_cannot_change_or_add_a_lot_or_hold_on_own_account(fs, path, value):
    patch = nested = {}
    *parents, leaf = path.split(".")
    for key in parents:
        nested[key] = {}
        nested = nested[key]
    nested[leaf] = value
    denied(fs.patch("users/alice", patch, ALICE, mask=[path]))
    assert alice(fs) == ALICE_ACCOUNT


@pytest.mark.parametrize("field,value", [("totalTokensExpired", 0), ("totalTokensExpired", 5), ("lots", {}),
                                         ("lots", ALICE_ACCOUNT["lots"]), ("holds", {}),
                                         ("holds", ALICE_ACCOUNT["holds"]), ("eventSeq", 0), ("eventSeq", 12)],
                         ids=["totalTokensExpired=0", "totalTokensExpired=5", "lots={}", "lots=alice's",
                              "holds={}", "holds=alice's", "eventSeq=0", "eventSeq=12"])
def test_user_cannot_add_lot_fields_to_an_account_that_has_none(fs, field, value):
    """An account written before lots and holds: the fields are absent, and a client may not
    bring them in, not even empty or zero."""
    denied(fs.patch("users/dave", {field: value}, DAVE, mask=[field]))
    denied(fs.patch("users/dave", {**LEGACY_ACCOUNT, field: value}, DAVE))  # no mask: full overwrite
    assert fs.read("users/dave") == LEGACY_ACCOUNT


def test_profile_edit_bundled_with_a_hold_release_is_refused_whole(fs):
    denied(fs.patch("users/alice", {"displayName": "Eve", "holds": {"hold_alice_1": {"status": "released"}}},
                    ALICE, mask=["displayName", "holds.hold_alice_1.status"]))
    assert alice(fs) == ALICE_ACCOUNT


def test_lot_fields_survive_a_profile_edit(fs):
    """Profile edits keep working on an account that holds lots and holds, and leave them as they were."""
    allowed(fs.patch("users/alice", {"displayName": "Alice B.", "locale": "fr"}, ALICE, mask=["displayName", "locale"]))
    assert alice(fs) == {**ALICE_ACCOUNT, "displayName": "Alice B.", "locale": "fr"}


def test_profile_edit_works_on_an_account_without_lot_fields(fs):
    allowed(fs.patch("users/dave", {"displayName": "Dave"}, DAVE, mask=["displayName"]))
    assert fs.read("users/dave") == {**LEGACY_ACCOUNT, "displayName": "Dave"}


def test_increment_transform_on_expired_total_or_a_lot_is_refused(fs):
    denied(fs.commit([{"transform": {"document": fs.name("users/alice"), "fieldTransforms": [
        {"fieldPath": "totalTokensExpired", "increment": enc(-5)},
        {"fieldPath": "lots.lot_alice_1.remaining", "increment": enc(1000)}]}}], ALICE))
    assert alice(fs) == ALICE_ACCOUNT


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
                                   {"createdAt": STAMP}, {"subscription": {"plan": "pro"}},
                                   {"totalTokensExpired": 0}, {"lots": {}}, {"lots": ALICE_ACCOUNT["lots"]},
                                   {"holds": {}}, {"holds": ALICE_ACCOUNT["holds"]}, {"eventSeq": 0}],
                         ids=["tokenBalance=0", "tokenBalance", "frozen", "createdAt", "subscription",
                              "totalTokensExpired", "lots={}", "lots", "holds={}", "holds", "eventSeq"])
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


# --- lots and holds: read-only for their owner, like the ledger ---------------------------------

COLLECTIONS = ["lots", "holds"]
OWN = {"lots": ["lot_alice_1", "lot_alice_2"], "holds": ["hold_alice_1"]}
BOBS = {"lots": ["lot_bob_1"], "holds": ["hold_bob_1"]}
OTHER_FIELD = {"lots": ("source", "purchase"), "holds": ("status", "open")}


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_user_reads_own_lots_and_holds(fs, collection):
    for doc_id in OWN[collection]:
        doc = allowed(fs.get(f"{collection}/{doc_id}", ALICE))
        assert {k: dec(v) for k, v in doc["fields"].items()} == SEED[f"{collection}/{doc_id}"]


@pytest.mark.parametrize("who", [BOB, ANON], ids=["other user", "unauthenticated"])
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_nobody_else_reads_a_lot_or_hold(fs, collection, who):
    for doc_id in OWN[collection]:
        denied(fs.get(f"{collection}/{doc_id}", who))


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_reading_a_missing_lot_or_hold_is_refused_rather_than_not_found(fs, collection):
    denied(fs.get(f"{collection}/no_such_doc", ALICE))


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_user_queries_own_lots_and_holds_filtered_on_own_user_id(fs, collection):
    assert found(fs.query(collection, ALICE, where=("userId", "EQUAL", ALICE))) == OWN[collection]
    assert found(fs.query(collection, BOB, where=("userId", "EQUAL", BOB))) == BOBS[collection]


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_lot_and_hold_query_without_the_user_id_filter_is_refused(fs, collection):
    denied(fs.query(collection, ALICE))
    denied(fs.request("GET", f"{fs.base}/{collection}", ALICE))
    denied(fs.query(collection, ALICE, where=("__name__", "EQUAL", Ref(f"{collection}/{BOBS[collection][0]}"))))
    field, value = OTHER_FIELD[collection]
    denied(fs.query(collection, ALICE, where=(field, "EQUAL", value)))


@pytest.mark.parametrize("where", [("userId", "EQUAL", BOB), ("userId", "IN", [ALICE, BOB]),
                                   ("userId", "NOT_EQUAL", ALICE)], ids=["other's id", "in list", "not own"])
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_lot_and_hold_query_reaching_other_users_is_refused(fs, collection, where):
    denied(fs.query(collection, ALICE, where=where))


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_unauthenticated_lot_and_hold_query_is_refused(fs, collection):
    denied(fs.query(collection, ANON, where=("userId", "EQUAL", ALICE)))


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_collection_group_query_on_lots_and_holds_is_refused(fs, collection):
    denied(fs.query(collection, ALICE, where=("userId", "EQUAL", ALICE), all_descendants=True))


NEW_DOC = {"lots": lot(ALICE, amount=1000000, remaining=1000000, source="grant"),
           "holds": hold(ALICE, status="captured")}
OWN_EDIT = {"lots": [{"remaining": 1000000}, {"expiresAt": None}, {"expired": 0}],
            "holds": [{"status": "released"}, {"amount": 0}, {"expiresAt": EPOCH + 10 ** 9}]}


@pytest.mark.parametrize("who", [ALICE, BOB, ANON], ids=["its owner", "other user", "unauthenticated"])
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_nobody_writes_lots_or_holds(fs, collection, who):
    own, bobs = f"{collection}/{OWN[collection][0]}", f"{collection}/{BOBS[collection][0]}"
    new = f"{collection}/new_doc"
    denied(fs.create(new, NEW_DOC[collection], who))
    denied(fs.patch(new, NEW_DOC[collection], who))  # an upsert creates
    for edit in OWN_EDIT[collection]:
        denied(fs.patch(own, edit, who, mask=list(edit)))
    denied(fs.patch(own, {**SEED[own], "amount": 1000000}, who))  # full overwrite
    denied(fs.patch(bobs, {"userId": ALICE}, who, mask=["userId"]))  # take someone else's
    denied(fs.commit([{"transform": {"document": fs.name(own), "fieldTransforms": [
        {"fieldPath": "amount", "increment": enc(1000)}]}}], who))
    denied(fs.delete(own, who))
    denied(fs.delete(bobs, who))
    assert fs.read(new) is None
    assert fs.read(own) == SEED[own]
    assert fs.read(bobs) == SEED[bobs]


def test_batch_releasing_own_hold_with_a_profile_edit_commits_nothing(fs):
    denied(fs.commit([
        {"update": {"name": fs.name("users/alice"), "fields": fields({"displayName": "Alice 2"})},
         "updateMask": {"fieldPaths": ["displayName"]}},
        {"update": {"name": fs.name("holds/hold_alice_1"), "fields": fields({"status": "released"})},
         "updateMask": {"fieldPaths": ["status"]}},
    ], ALICE))
    assert alice(fs) == ALICE_ACCOUNT
    assert fs.read("holds/hold_alice_1") == SEED["holds/hold_alice_1"]


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
