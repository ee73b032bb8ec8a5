"""The wallet's routes on the fakes (core/services/history.py, wallet.py, web/wallet_api.py): the
history's labels and receipts, the CSV export (formula injection, RFC 4180 quoting, every page),
a purchase's Stripe receipt (only the user's own), the customer portal (only the user's own
subscription's customer), the frozen and debt figures, and every refusal with its status."""
from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest
import stripe

from core.domain.account import Account
from core.services import accounts, history, wallet
from core.services.balance import grant, spend
from tests.unit.fakes import FakeQueue, make_deps


@pytest.fixture
def deps(store, redis):
    return replace(make_deps(store, redis), verify_id_token=lambda token: token.split(".")[0])


@pytest.fixture
def client(deps):
    from web.app import create_app

    return create_app(deps, FakeQueue()).test_client()


def auth(uid: str) -> dict:
    return {"Authorization": f"Bearer {uid}.token"}


def give(deps, uid: str, amount: int, key: str, reason: str = "welcome", **kw):
    return grant(deps, uid, amount, reason, key, "service", create_account=True, **kw)


def parse(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def paid(store, uid: str, payment_id: str, intent: str | None = "pi_1", status: str = "fulfilled", **fields):
    store.purchases[payment_id] = {"userId": uid, "status": status, "paymentIntentId": intent,
                                   "packageId": "starter", "tokens": 50, **fields}


# -- labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize("entry,text", [
    ({"type": "purchase", "packageId": "starter"}, "Purchase: Starter package"),
    ({"type": "subscription_allowance", "planId": "monthly"}, "Monthly plan allowance"),
    ({"type": "refund", "packageId": "pro"}, "Refund: Pro package"),
    ({"type": "refund", "planId": "monthly", "invoiceId": "in_1"}, "Refund: Monthly plan payment"),
    ({"type": "dispute_reversal", "packageId": "basic"}, "Dispute reversal: Basic package"),
    ({"type": "grant", "source": "promo"}, "Promotional tokens"),
    ({"type": "grant", "source": "grant"}, "Tokens granted"),
    ({"type": "adjustment"}, "Adjustment"),
    ({"type": "spend"}, "Spent"),
    ({"type": "spend", "holdId": "h1"}, "Spent (reserved tokens used)"),
    ({"type": "expiry", "source": "promo"}, "Promotional tokens expired"),
    ({"type": "expiry", "source": "plan"}, "Unused plan tokens expired"),
    ({"type": "expiry", "source": "grant"}, "Tokens expired"),
    ({"type": "purchase", "packageId": "gone"}, "Purchase: purchase"),
])
def test_every_entry_type_has_a_label_people_understand(deps, entry, text):
    assert history.label(entry, deps.catalog) == text


def test_the_history_api_gives_labels_running_balance_and_receipts(deps, client, store):
    give(deps, "alice", 30, "g1", source="promo", expires_at=int(deps.clock()) + 86400)
    spend(deps, "alice", 5, "a game", "s1", "user:alice")
    store.ledger["purchase_cs_1"] = {"userId": "alice", "type": "purchase", "amount": 50, "balanceAfter": 75,
                                     "packageId": "starter", "checkoutSessionId": "cs_1", "paymentIntentId": "pi_1",
                                     "actor": "secret-operator"}
    resp = client.get("/api/tokens/transactions?limit=2", headers=auth("alice"))
    assert resp.status_code == 200
    body = resp.get_json()
    first, second = body["entries"]
    assert (first["label"], first["amount"], first["balanceAfter"], first["receiptFor"]) == (
        "Purchase: Starter package", 50, 75, "cs_1")
    assert "actor" not in first and "paymentIntentId" not in first
    assert (second["label"], second["amount"], second["balanceAfter"], second["reason"]) == ("Spent", -5, 25, "a game")
    assert "receiptFor" not in second
    rest = client.get(f"/api/tokens/transactions?limit=2&cursor={body['nextCursor']}", headers=auth("alice")).get_json()
    assert [(e["label"], e["balanceAfter"]) for e in rest["entries"]] == [("Promotional tokens", 30)]
    assert rest["nextCursor"] is None


# -- CSV -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,cell", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+1", "'+1+1"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"),
    (None, ""), (-50, -50), (0, 0), (True, "true"),
])
def test_cells_that_could_start_a_formula_are_quoted(value, cell):
    assert history.safe_cell(value) == cell


def test_csv_quoting_follows_rfc_4180():
    lines = list(history.csv_lines([["a,b", 'say "hi"', "two\nlines", -5, ""]]))
    assert lines == ['"a,b","say ""hi""","two\nlines",-5,\r\n']


def test_the_export_streams_every_page_newest_first(deps, client, store):
    calls = []
    listing = store.list_entries

    def counting(user_id, limit, after):
        calls.append((limit, after))
        return listing(user_id, limit, after)
    store.list_entries = counting
    for i in range(history.PAGE * 2 + 5):
        give(deps, "bob", 1, f"k{i}")
    give(deps, "carol", 7, "other")  # another user's entry never appears
    resp = client.get("/api/tokens/transactions.csv", headers=auth("bob"))
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.mimetype == "text/csv" and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="tokenbank-history-2026-01-01.csv"'
    rows = parse(resp.get_data(as_text=True))
    assert rows[0] == list(history.COLUMNS)
    body = rows[1:]
    assert len(body) == history.PAGE * 2 + 5
    assert [int(r[4]) for r in body] == list(range(history.PAGE * 2 + 5, 0, -1))  # the running balance
    assert all(r[1] == "grant" and r[2] == "Tokens granted" and r[3] == "1" for r in body)
    assert body[0][0].startswith("2026-01-01T00:00:") and body[0][0].endswith("Z")
    assert [c for c in calls] == [(history.PAGE, None), (history.PAGE, body[history.PAGE - 1][7]),
                                  (history.PAGE, body[2 * history.PAGE - 1][7])]


def test_the_export_neutralises_formulas_and_quotes_what_needs_it(deps, client):
    give(deps, "dave", 10, "g1", reason="=cmd|' /C calc'!A0")
    spend(deps, "dave", 3, '-1+2, "quoted"', "s1", "user:dave")
    spend(deps, "dave", 2, "@import", "s2", "user:dave")
    text = client.get("/api/tokens/transactions.csv", headers=auth("dave")).get_data(as_text=True)
    assert '"\'-1+2, ""quoted"""' in text and "\r\n" in text
    rows = parse(text)
    assert [(r[1], r[3], r[4], r[5]) for r in rows[1:]] == [
        ("spend", "-2", "5", "'@import"), ("spend", "-3", "7", "'-1+2, \"quoted\""),
        ("grant", "10", "10", "'=cmd|' /C calc'!A0")]


def test_an_empty_history_is_the_header_alone(client):
    rows = parse(client.get("/api/tokens/transactions.csv", headers=auth("newcomer")).get_data(as_text=True))
    assert rows == [list(history.COLUMNS)]


def test_the_export_needs_a_signed_in_user_and_is_rate_limited(deps, client):
    assert client.get("/api/tokens/transactions.csv").status_code == 401
    service = {"X-Service-Key": deps.settings.service_api_keys[0]}
    assert client.get("/api/tokens/transactions.csv", headers=service).status_code == 401
    for _ in range(history.EXPORTS_PER_MINUTE):
        assert client.get("/api/tokens/transactions.csv", headers=auth("erin")).status_code == 200
    refused = client.get("/api/tokens/transactions.csv", headers=auth("erin"))
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0


def test_a_store_that_is_down_is_a_503_not_a_truncated_file(client, store):
    from google.api_core.exceptions import ServiceUnavailable

    store.fail["list_entries"] = ServiceUnavailable("firestore down")
    resp = client.get("/api/tokens/transactions.csv", headers=auth("frank"))
    assert resp.status_code == 503 and resp.get_json()["error"] == "unavailable"


# -- receipts --------------------------------------------------------------------------------
def test_a_receipt_of_the_users_own_paid_purchase(deps, client, store):
    paid(store, "alice", "cs_paid", "pi_paid")
    deps.payments.receipts["pi_paid"] = "https://pay.stripe.com/receipts/payment/abc"
    resp = client.get("/api/purchases/cs_paid/receipt", headers=auth("alice"))
    assert resp.status_code == 200
    assert resp.get_json() == {"paymentId": "cs_paid", "receiptUrl": "https://pay.stripe.com/receipts/payment/abc"}


def test_a_plan_invoices_receipt_finds_the_payment_intent_at_stripe(deps, client, store):
    paid(store, "alice", "in_1", None, kind="plan_invoice")
    deps.payments.invoices_by_intent["pi_inv"] = {"id": "in_1"}
    deps.payments.receipts["pi_inv"] = "https://pay.stripe.com/receipts/invoices/xyz"
    assert client.get("/api/purchases/in_1/receipt", headers=auth("alice")).get_json()["receiptUrl"] == \
        "https://pay.stripe.com/receipts/invoices/xyz"


def test_another_users_purchase_or_an_unknown_one_is_404_and_asks_stripe_nothing(deps, client, store):
    paid(store, "alice", "cs_alices", "pi_a")
    deps.payments.receipts["pi_a"] = "https://pay.stripe.com/receipts/payment/a"
    asked = []
    deps.payments.receipt_url = lambda pi: asked.append(pi)  # type: ignore[method-assign]
    for path in ("/api/purchases/cs_alices/receipt", "/api/purchases/cs_nobody/receipt"):
        resp = client.get(path, headers=auth("mallory"))
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"
        assert "pi_a" not in resp.get_data(as_text=True)
    assert asked == []


@pytest.mark.parametrize("bad", ["pi_123", "cs_", "cs_x$y", "in_" + "a" * 260, "cs_1 2"])
def test_a_malformed_purchase_id_is_400(client, bad):
    resp = client.get(f"/api/purchases/{bad}/receipt", headers=auth("alice"))
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request", resp.get_data(as_text=True)


def test_an_unpaid_purchase_or_a_charge_without_receipt_is_404_no_receipt(deps, client, store):
    paid(store, "alice", "cs_pending", "pi_p", status="pending")
    paid(store, "alice", "cs_bare", "pi_bare")
    for sid in ("cs_pending", "cs_bare"):
        resp = client.get(f"/api/purchases/{sid}/receipt", headers=auth("alice"))
        assert resp.status_code == 404 and resp.get_json()["error"] == "no_receipt"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "//evil.test/r", ""])
def test_only_a_web_address_is_ever_answered(deps, client, store, url):
    paid(store, "alice", "cs_1", "pi_1")
    deps.payments.receipts["pi_1"] = url
    resp = client.get("/api/purchases/cs_1/receipt", headers=auth("alice"))
    assert resp.status_code == 404 and resp.get_json()["error"] == "no_receipt"
    mirror(store, "alice")
    deps.payments.subscriptions["sub_1"] = {"id": "sub_1", "customer": "cus_alice", "metadata": {"userId": "alice"}}
    deps.payments.billing_portal_session = lambda customer, return_url: url  # type: ignore[method-assign]
    assert client.post("/api/billing-portal", headers=auth("alice")).status_code == 502


def test_stripe_down_is_a_502(deps, client, store):
    paid(store, "alice", "cs_1", "pi_1")
    deps.payments.wallet_error = stripe.APIConnectionError("no route to stripe")
    resp = client.get("/api/purchases/cs_1/receipt", headers=auth("alice"))
    assert resp.status_code == 502 and resp.get_json()["error"] == "payment_provider_unavailable"


def test_receipts_need_a_user_and_are_rate_limited(deps, client, store):
    assert client.get("/api/purchases/cs_1/receipt").status_code == 401
    paid(store, "alice", "cs_1", "pi_1")
    deps.payments.receipts["pi_1"] = "https://pay.stripe.com/receipts/payment/1"
    for _ in range(wallet.RECEIPTS_PER_MINUTE):
        assert client.get("/api/purchases/cs_1/receipt", headers=auth("alice")).status_code == 200
    assert client.get("/api/purchases/cs_1/receipt", headers=auth("alice")).status_code == 429


# -- the customer portal ----------------------------------------------------------------------
def mirror(store, uid: str, sub_id: str = "sub_1", status: str = "active"):
    store.users.setdefault(uid, {})["subscription"] = {"id": sub_id, "status": status, "plan": "monthly"}


def test_the_portal_opens_for_the_customer_of_the_users_own_subscription(deps, client, store):
    mirror(store, "alice")
    deps.payments.subscriptions["sub_1"] = {"id": "sub_1", "customer": "cus_alice", "metadata": {"userId": "alice"}}
    resp = client.post("/api/billing-portal", headers=auth("alice"))
    assert resp.status_code == 200 and resp.get_json() == {"url": "https://billing.stripe.test/p/session/test_1"}
    assert deps.payments.portal_sessions == [
        ("cus_alice", deps.settings.public_base_url + "/buy-tokens?from=billing-portal")]


def test_an_ended_plan_still_opens_the_portal(deps, client, store):
    mirror(store, "alice", status="canceled")
    deps.payments.subscriptions["sub_1"] = {"id": "sub_1", "customer": {"id": "cus_a"}, "metadata": {"userId": "alice"}}
    assert client.post("/api/billing-portal", headers=auth("alice")).status_code == 200
    assert deps.payments.portal_sessions[0][0] == "cus_a"


def test_no_plan_or_a_subscription_that_is_not_the_users_is_404(deps, client, store):
    resp = client.post("/api/billing-portal", headers=auth("nobody"))
    assert resp.status_code == 404 and resp.get_json()["error"] == "no_subscription"
    mirror(store, "mallory", "sub_alice")
    deps.payments.subscriptions["sub_alice"] = {"id": "sub_alice", "customer": "cus_alice",
                                                "metadata": {"userId": "alice"}}
    mirror(store, "ghost", "sub_gone")
    for uid in ("mallory", "ghost"):
        resp = client.post("/api/billing-portal", headers=auth(uid))
        assert resp.status_code == 404 and "cus_alice" not in resp.get_data(as_text=True)
    assert deps.payments.portal_sessions == []


def test_the_portal_needs_a_user_and_stripe(deps, client, store):
    assert client.post("/api/billing-portal").status_code == 401
    assert client.get("/api/billing-portal", headers=auth("alice")).status_code == 405
    mirror(store, "alice")
    deps.payments.wallet_error = stripe.APIConnectionError("down")
    resp = client.post("/api/billing-portal", headers=auth("alice"))
    assert resp.status_code == 502 and resp.get_json()["error"] == "payment_provider_unavailable"


def test_portal_sessions_are_rate_limited(deps, client, store):
    mirror(store, "alice")
    deps.payments.subscriptions["sub_1"] = {"id": "sub_1", "customer": "cus_alice", "metadata": {"userId": "alice"}}
    for _ in range(wallet.PORTALS_PER_MINUTE):
        assert client.post("/api/billing-portal", headers=auth("alice")).status_code == 200
    assert client.post("/api/billing-portal", headers=auth("alice")).status_code == 429


# -- frozen and in debt ------------------------------------------------------------------------
def test_the_balance_says_frozen_since_and_debt(deps, store):
    assert {k: accounts.balance(deps, "new")[k] for k in ("frozen", "frozenSince", "debt")} == {
        "frozen": False, "frozenSince": None, "debt": 0}

    def freeze(tx):
        account = (tx.get(Account, "alice") or Account("alice"))
        tx.put(account.freeze("dp_2", {"since": 1_700_000_500}).freeze("dp_1", {"since": 1_700_000_000})
               .post("refund_x", "refund", -40, {})[0])
    deps.uow.run(freeze)
    shown = accounts.balance(deps, "alice")
    assert (shown["frozen"], shown["frozenSince"], shown["debt"], shown["tokenBalance"]) == (
        True, 1_700_000_000, 40, -40)
