"""The support console (/admin) in headless Chromium against the running system.

- Nobody but support staff gets anything: every console route and action, enumerated from the
  app's url_map, answers 401 to an anonymous browser (the sign-in page on a GET) and 403 to a
  signed-in customer, and changes nothing.
- An admin (the ``admin`` custom claim, set with firebase-admin on the Auth emulator) signs in,
  sees the last 24 hours as server-drawn charts, finds a customer by email and sees their
  money: balance, purchase, hold, lots, ledger, a dead-lettered payment. Each action — adjust,
  release the hold, replay the dead letter (the worker then credits it), reset the purchase
  limits — is reviewed, confirmed, and checked in the ledger, Redis and the ops_log. Taking the
  claim away locks the open session out at its next request.
- Forged requests fail: a page of another origin on the same site (the session cookie travels
  with it) posting a confirmed adjustment gets 403; from another site the Strict cookie does not
  even travel (401); a request without this session's CSRF token, or from a foreign Origin, 403.

Screenshots: artifacts/screenshots/, and docs/img/admin-*.png with TOKENBANK_UPDATE_DOC_IMAGES=1.
"""
from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from playwright.sync_api import expect

from core.services import operations
from core.services.dead_letters import dead_letter_event
from core.services.support_access import csrf_token
from devstack import stripe_events as events
from devstack.auth_emulator import sign_in, sign_up
from devstack.processes import free_port, wait_until
from tests.e2e.browser_support import browser, chromium_missing_reason, new_page
from tests.e2e.test_wallet_figures import picture, watch_csp
from web.admin import PUBLIC
from web.admin_guard import COOKIE

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def auth_host(system) -> str:
    return system.settings.firebase_auth_emulator_host


def account(system, prefix: str, admin: bool = False) -> tuple[str, str]:
    from firebase_admin import auth

    email = f"{prefix}-{secrets.token_hex(4)}@example.com"
    uid, _ = sign_up(auth_host(system), email, PASSWORD)
    if admin:
        auth.set_custom_user_claims(uid, {"admin": True}, app=system.deps.identity.app)
    return uid, email


def console_sign_in(page, system, email: str) -> None:
    page.goto(f"{system.base_url}/admin/signin")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#signin-button")


def session_cookie(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)


def guarded_routes(system, uid: str) -> list[tuple[str, str]]:
    """(method, path) of every console route but the open ones, from the app's own url_map."""
    from web.app import create_app

    app = create_app(system.deps, queue=object())
    sample = {"uid": uid, "hold_id": "hold_sample", "event_id": "evt_sample"}
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint in PUBLIC:
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", sample[name])
        routes += [(m, path) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert {m for m, _ in routes} == {"GET", "POST"} and len(routes) >= 7
    return routes


def customer(system) -> tuple[str, str]:
    """A customer who bought Basic (200 tokens, through a signed webhook and the worker)."""
    uid, email = account(system, "customer")
    session = events.checkout_session(uid, "basic")
    body, headers = events.signed(events.event(session), system.secret)
    assert requests.post(f"{system.base_url}/api/stripe/webhook", data=body, headers=headers, timeout=10).ok
    wait_until(lambda: (system.deps.store.get_purchase(session["id"]) or {}).get("status") == "fulfilled", 30,
               what="the purchase credited")
    return uid, email


def ops_log(system, uid: str) -> list[dict]:
    return sorted((o for o in system.deps.store.user_ops_log(uid, 50)), key=lambda o: o["createdAt"])


def ledger(system, uid: str) -> list[dict]:
    return system.deps.store.list_entries(uid, 100, None)[0]


def test_only_support_staff_get_in_every_route_and_action(chromium, system):
    uid, _ = customer(system)
    routes = guarded_routes(system, uid)
    balance_before = system.deps.store.get_account(uid).balance

    anonymous = new_page(chromium)
    for method, path in routes:
        if method == "GET":
            answer = anonymous.goto(f"{system.base_url}{path}")
            assert answer.status == 401, path
            expect(anonymous.locator("#signin-form")).to_be_visible()
        else:
            answer = anonymous.request.post(f"{system.base_url}{path}", headers={"Origin": system.base_url},
                                            form={"reason": "r", "amount": "5", "step": "confirm"})
            assert answer.status == 401, path
    anonymous.context.close()

    page = new_page(chromium)
    _, buyer_email = account(system, "buyer")
    console_sign_in(page, system, buyer_email)
    expect(page.locator("#signin-error")).to_have_text(f"{buyer_email} has no support access.")
    csrf = csrf_token(session_cookie(page))  # a valid session: only the lack of access refuses it
    for method, path in routes:
        if method == "GET":
            answer = page.goto(f"{system.base_url}{path}")
        else:
            answer = page.request.post(f"{system.base_url}{path}", headers={"Origin": system.base_url},
                                       form={"csrf": csrf, "reason": "r", "amount": "5", "step": "confirm",
                                             "key": secrets.token_hex(16)})
        assert answer.status == 403, (method, path)
        assert "no support access" in answer.text(), path
    page.goto(f"{system.base_url}/admin")
    picture(page, "admin-forbidden")
    page.context.close()
    assert system.deps.store.get_account(uid).balance == balance_before and ops_log(system, uid) == []


def confirm_action(page, review_button) -> None:
    review_button.click()
    page.wait_for_selector("#confirm-form")
    page.click("#confirm-button")
    page.wait_for_selector("#done-title")


def test_an_admin_finds_a_customer_and_every_action_lands_in_the_ledger_and_the_ops_log(chromium, system):
    admin_uid, admin_email = account(system, "support", admin=True)
    uid, email = customer(system)
    # The customer's second payment never arrived: its event was dead-lettered after the last retry.
    stuck = events.checkout_session(uid, "starter")
    stuck_event = events.event(stuck)
    body, headers = events.signed(stuck_event, system.secret)
    event_id, payload = stuck_event["id"], body.decode()
    system.deps.store.receive_event(event_id, {"type": "checkout.session.completed", "status": "received",
                                               "payload": payload, "signature": headers["Stripe-Signature"],
                                               "userId": uid})
    dead_letter_event(system.deps, event_id, "checkout.session.completed", payload, RuntimeError("gave up after 8"),
                      9, headers["Stripe-Signature"])
    service = {"X-Service-Key": system.settings.service_api_keys[0]}
    hold = requests.post(f"{system.base_url}/api/tokens/holds", headers=service, timeout=10,
                         json={"userId": uid, "amount": 30, "idempotencyKey": f"job-{uid}", "reason": "video"}).json()
    _, customer_token = sign_in(auth_host(system), email, PASSWORD)
    opened = requests.post(f"{system.base_url}/api/checkout", json={"packageId": "starter"}, timeout=20,
                           headers={"Authorization": f"Bearer {customer_token}"})
    assert opened.status_code == 200, opened.text
    assert len(operations.rate_limit(system.deps, uid)["openCheckouts"]) == 1

    page = new_page(chromium)
    csp = watch_csp(page)
    page.goto(f"{system.base_url}/admin/users/{uid}")  # a link from a ticket, before signing in: 401 and sign in
    expect(page.locator("#signin-form")).to_be_visible()
    picture(page, "admin-signin")
    console_sign_in(page, system, admin_email)
    page.wait_for_url(f"{system.base_url}/admin")
    expect(page.locator("svg.chart")).to_have_count(5)
    assert int(page.locator("#series-webhooks").get_attribute("data-total")) >= 1
    assert int(page.locator("#series-credits").get_attribute("data-total")) >= 1
    assert int(page.locator("#series-dead_letters").get_attribute("data-total")) >= 1
    expect(page.locator("#dead-letters")).to_contain_text(event_id)
    expect(page.locator("#operator")).to_have_text(admin_email)
    picture(page, "admin-dashboard")

    page.fill("#q", email.upper())
    page.click("#find-button")
    page.wait_for_url(f"{system.base_url}/admin/users/{uid}")
    expect(page.locator("#email")).to_contain_text(email)
    expect(page.locator("#balance")).to_have_text("200")
    expect(page.locator("#available")).to_have_text("170")
    expect(page.locator("#held")).to_have_text("30")
    expect(page.locator(f"tr[data-event='{event_id}']")).to_have_attribute("data-status", "dead_lettered")
    expect(page.locator("#attention")).to_contain_text("1 Stripe event(s) dead-lettered")
    expect(page.locator(f"tr[data-hold='{hold['holdId']}']")).to_have_attribute("data-status", "open")
    expect(page.locator("#purchases tr[data-status='fulfilled']")).to_have_count(1)
    expect(page.locator("#ledger tr[data-type='purchase']")).to_have_count(1)
    picture(page, "admin-user")

    # 1. Adjust: -25, with a reason, reviewed then confirmed.
    page.fill("#adjust-amount", "-25")
    page.fill("#adjust-reason", "goodwill tokens granted twice")
    page.click("#adjust-review")
    page.wait_for_selector("#confirm-form")
    expect(page.locator("#summary")).to_contain_text("from 200 to 175")
    assert system.deps.store.get_account(uid).balance == 200  # the review changed nothing
    picture(page, "admin-confirm")
    page.click("#confirm-button")
    page.wait_for_selector("#done-title")
    expect(page.locator("#outcome")).to_contain_text("is now 175")
    picture(page, "admin-done")
    [adjustment] = [e for e in ledger(system, uid) if e["type"] == "adjustment"]
    assert (adjustment["amount"], adjustment["actor"], adjustment["reason"]) == (
        -25, f"operator:{admin_email}", "goodwill tokens granted twice")

    # 2. Release the hold.
    page.click("#back")
    page.fill(f"tr[data-hold='{hold['holdId']}'] input[name=reason]", "the job crashed")
    confirm_action(page, page.locator(f"tr[data-hold='{hold['holdId']}'] button"))
    assert system.deps.store.get_hold(hold["holdId"]).status == "released"

    # 3. Replay the dead letter: the worker credits the payment that never arrived.
    page.click("#back")
    page.fill(f"tr[data-event='{event_id}'] input[name=reason]", "customer paid; worker bug fixed")
    confirm_action(page, page.locator(f"tr[data-event='{event_id}'] button"))
    wait_until(lambda: (system.deps.store.get_purchase(stuck["id"]) or {}).get("status") == "fulfilled", 30,
               what="the replayed payment credited")
    assert [e["type"] for e in ledger(system, uid)][:2] == ["purchase", "adjustment"]

    # 4. Reset the purchase limits.
    page.click("#back")
    page.fill("#reset-reason", "verified the customer by phone")
    confirm_action(page, page.locator("#reset-review"))
    windows = operations.rate_limit(system.deps, uid)
    assert windows["openCheckouts"] == [] and windows["paidPurchases"] == []

    page.click("#back")
    expect(page.locator("#balance")).to_have_text("225")  # 200 - 25 + 50
    expect(page.locator(f"tr[data-event='{event_id}']")).to_have_attribute("data-status", "processed")
    expect(page.locator("#ops-log li[data-status='done']")).to_have_count(4)
    log = ops_log(system, uid)
    assert [(o["action"], o["status"], o["operatorUid"], o["operatorEmail"]) for o in log] == [
        (action, "done", admin_uid, admin_email) for action in ("adjust", "release_hold", "replay_event",
                                                                "reset_limits")]
    assert [o["reason"] for o in log] == ["goodwill tokens granted twice", "the job crashed",
                                          "customer paid; worker bug fixed", "verified the customer by phone"]
    assert (log[1]["holdId"], log[2]["eventId"]) == (hold["holdId"], event_id)
    account_now = system.deps.store.get_account(uid)
    assert account_now.balance == sum(e["amount"] for e in ledger(system, uid)) == 225

    # The claim is read on every request: taken away, the open session is refused at once.
    from firebase_admin import auth

    auth.set_custom_user_claims(admin_uid, {}, app=system.deps.identity.app)
    answer = page.reload()
    assert answer.status == 403
    assert csp == []
    page.context.close()


class _Attacker(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


@pytest.fixture
def attacker():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def forged_form(action: str, fields: dict) -> bytes:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return (f'<!doctype html><title>You won!</title><form id="f" method="post" action="{action}">{inputs}'
            f'<button id="go">Claim your prize</button></form>').encode()


def test_forged_requests_fail(chromium, system, attacker):
    _, admin_email = account(system, "support", admin=True)
    uid, _ = customer(system)
    page = new_page(chromium)
    console_sign_in(page, system, admin_email)
    page.wait_for_url(f"{system.base_url}/admin")
    cookie = session_cookie(page)
    target = f"{system.base_url}/admin/users/{uid}/adjust"
    confirmed = {"step": "confirm", "amount": "-150", "reason": "forged", "key": secrets.token_hex(16)}
    port = attacker.server_address[1]

    # Another origin on the same site (another port of 127.0.0.1): the cookie travels, the request fails.
    for fields in (confirmed, {**confirmed, "csrf": "guessed-token"}):
        _Attacker.page = forged_form(target, fields)
        page.goto(f"http://127.0.0.1:{port}/prize")
        with page.expect_navigation() as went:
            page.click("#go")
        assert went.value.status == 403 and "forged request refused" in page.content().lower()
    # Another site (localhost is not 127.0.0.1): the Strict cookie stays home.
    _Attacker.page = forged_form(target, confirmed)
    page.goto(f"http://localhost:{port}/prize")
    with page.expect_navigation() as went:
        page.click("#go")
    assert went.value.status == 401
    # Its script cannot open a console session either: the bearer header needs a CORS preflight.
    page.goto(f"http://localhost:{port}/prize")
    refused = page.evaluate("""url => fetch(url, {method: 'POST', credentials: 'include',
        headers: {Authorization: 'Bearer x'}}).then(() => 'sent', () => 'blocked')""",
                            f"{system.base_url}/admin/session")
    assert refused == "blocked"

    # A tool with the session cookie but not the token, or the token from a foreign Origin.
    for form, origin in ((confirmed, system.base_url), ({**confirmed, "csrf": csrf_token(cookie)},
                                                         "https://evil.example")):
        answer = page.request.post(target, form=form, headers={"Origin": origin})
        assert answer.status == 403 and "forged request refused" in answer.text().lower()
    assert system.deps.store.get_account(uid).balance == 200
    assert [e["type"] for e in ledger(system, uid)] == ["purchase"] and ops_log(system, uid) == []

    # The same confirmation from the console itself, with the token, goes through.
    answer = page.request.post(target, form={**confirmed, "csrf": csrf_token(cookie)},
                               headers={"Origin": system.base_url})
    assert answer.status == 200 and system.deps.store.get_account(uid).balance == 50
    page.context.close()
