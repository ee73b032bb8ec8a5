"""The console's web tier on the fakes (Flask's test client, no sockets): every route behind the
gate, the session cookie, CSRF and Origin checks, the pages within the Content-Security-Policy.

The routes are enumerated from the app's url_map, so a route added later is checked too."""
from __future__ import annotations

import re

import pytest

from core.services import balance, holds
from core.services.support_access import csrf_token
from tests.unit.fake_support import FakeIdentity
from tests.unit.fakes import FIXED_NOW, FakeQueue, make_deps
from web.admin import PUBLIC
from web.admin_guard import COOKIE
from web.app import create_app

BASE = "http://127.0.0.1:8000"  # the test settings' PUBLIC_BASE_URL
SAMPLE = {"uid": "u1", "hold_id": "hold_x", "event_id": "evt_x"}


@pytest.fixture
def identity():
    people = FakeIdentity()
    people.add("boss", "boss@example.com", claims={"admin": True})
    people.add("buyer", "buyer@example.com")
    people.add("u1", "u1@example.com")
    return people


@pytest.fixture
def deps(store, redis, identity):
    deps = make_deps(store, redis, identity=identity)
    balance.grant(deps, "u1", 100, "welcome", "g1", "service", create_account=True)
    return deps


@pytest.fixture
def app(deps):
    return create_app(deps, FakeQueue())


def console_rules(app) -> list:
    return [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]


def guarded(app) -> list[tuple[str, str]]:
    """(method, url) of every console route but the open ones, with sample arguments."""
    out = []
    for rule in console_rules(app):
        if rule.endpoint in PUBLIC:
            continue
        url = rule.rule
        for name in rule.arguments:
            url = url.replace(f"<{name}>", SAMPLE[name])
        out += [(m, url) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


def session_for(app, identity, uid: str):
    client = app.test_client()
    token = identity.sign_in(uid, auth_time=FIXED_NOW)
    answer = client.post("/admin/session", headers={"Authorization": f"Bearer {token}", "Origin": BASE})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return client, client.get_cookie(COOKIE, path="/admin").value, answer


def test_the_open_routes_are_exactly_sign_in_session_and_sign_out(app):
    assert {r.endpoint for r in console_rules(app)} >= PUBLIC
    assert {r.rule for r in console_rules(app) if r.endpoint in PUBLIC} == {"/admin/signin", "/admin/session",
                                                                           "/admin/signout"}
    assert len(guarded(app)) == 7  # dashboard, find, user page and the four actions


def test_anonymous_gets_401_everywhere_and_the_sign_in_page_on_a_get(app, store):
    client = app.test_client()
    for method, url in guarded(app):
        answer = client.open(url, method=method, data={"reason": "r", "amount": "5", "step": "confirm"})
        assert answer.status_code == 401, (method, url)
        if method == "GET":
            assert 'id="signin-form"' in answer.get_data(as_text=True)
    assert store.balance("u1") == 100 and store.docs["ops_log"] == {}


def test_a_signed_in_non_admin_gets_403_everywhere(app, identity, store):
    client, cookie, answer = session_for(app, identity, "buyer")
    assert answer.get_json() == {"support": False, "email": "buyer@example.com", "uid": "buyer"}
    for method, url in guarded(app):
        form = {"reason": "r", "amount": "5", "step": "confirm", "key": "a" * 32, "csrf": csrf_token(cookie)}
        answer = client.open(url, method=method, data=form, headers={"Origin": BASE})
        assert answer.status_code == 403, (method, url)
        assert "no support access" in answer.get_data(as_text=True)
    assert store.balance("u1") == 100 and store.docs["ops_log"] == {}


def test_the_session_cookie_is_httponly_strict_and_limited_to_the_console(app, identity):
    _, _, answer = session_for(app, identity, "boss")
    header = answer.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=") and "HttpOnly" in header and "SameSite=Strict" in header
    assert "Path=/admin" in header and "Max-Age=3600" in header
    assert "Secure" not in header  # http in development; Secure on an https PUBLIC_BASE_URL


def test_sign_in_refuses_a_bad_token_or_another_origin(app, identity):
    client = app.test_client()
    assert client.post("/admin/session").status_code == 401
    assert client.post("/admin/session", headers={"Authorization": "Bearer forged"}).status_code == 401
    token = identity.sign_in("boss", auth_time=FIXED_NOW)
    foreign = client.post("/admin/session", headers={"Authorization": f"Bearer {token}",
                                                     "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and client.get_cookie(COOKIE, path="/admin") is None


def test_every_action_needs_this_sessions_csrf_token_and_this_sites_origin(app, identity, store):
    client, cookie, _ = session_for(app, identity, "boss")
    _, other_cookie, _ = session_for(app, identity, "boss")
    actions = [(m, u) for m, u in guarded(app) if m == "POST"]
    assert len(actions) == 4
    for method, url in actions:
        base = {"reason": "r", "amount": "5", "step": "review"}
        for csrf, origin in ((None, BASE), ("", BASE), (csrf_token(other_cookie), BASE),
                             (csrf_token(cookie), "https://evil.example"), (csrf_token(cookie), "null")):
            form = base if csrf is None else {**base, "csrf": csrf}
            answer = client.open(url, method=method, data=form, headers={"Origin": origin})
            assert answer.status_code == 403 and "forged request refused" in answer.get_data(as_text=True).lower(), \
                (url, csrf, origin)
    assert store.balance("u1") == 100 and store.docs["ops_log"] == {}


def test_an_admin_reviews_then_confirms_an_adjustment(app, identity, store):
    client, cookie, _ = session_for(app, identity, "boss")
    csrf = csrf_token(cookie)
    found = client.get("/admin/users?q=U1@example.com")
    assert found.status_code == 303 and found.headers["Location"].endswith("/admin/users/u1")
    page = client.get("/admin/users/u1")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    assert 'id="balance">100<' in text and csrf in text
    review = client.post("/admin/users/u1/adjust", data={"csrf": csrf, "step": "review", "amount": "-40",
                                                         "reason": "refund by hand"}, headers={"Origin": BASE})
    assert review.status_code == 200 and store.balance("u1") == 100
    key = re.search(r'name="key" value="([0-9a-f]{32})"', review.get_data(as_text=True)).group(1)
    form = {"csrf": csrf, "step": "confirm", "amount": "-40", "reason": "refund by hand", "key": key}
    done = client.post("/admin/users/u1/adjust", data=form)  # no Origin header: the token decides
    assert done.status_code == 200 and 'id="done-title"' in done.get_data(as_text=True)
    assert store.balance("u1") == 60
    again = client.post("/admin/users/u1/adjust", data=form)
    assert again.status_code == 200 and "nothing was done twice" in again.get_data(as_text=True)
    assert store.balance("u1") == 60
    [log] = store.docs["ops_log"].values()
    assert (log["operatorUid"], log["operatorEmail"], log["reason"], log["status"]) == (
        "boss", "boss@example.com", "refund by hand", "done")


@pytest.mark.parametrize("form, status, text", [
    ({"amount": "5"}, 400, "reason is required"),
    ({"amount": "lots", "reason": "r"}, 400, "amount must be"),
    ({"amount": "-500", "reason": "r", "step": "confirm", "key": "b" * 32}, 409, "below"),
])
def test_refusals_are_pages_with_their_status(app, identity, store, form, status, text):
    client, cookie, _ = session_for(app, identity, "boss")
    answer = client.post("/admin/users/u1/adjust", data={"csrf": csrf_token(cookie), **form})
    assert answer.status_code == status and text in answer.get_data(as_text=True).lower()
    assert store.balance("u1") == 100


def test_release_replay_and_reset_refuse_what_is_not_this_users(app, identity, deps):
    client, cookie, _ = session_for(app, identity, "boss")
    csrf = csrf_token(cookie)
    for url in ("/admin/users/u1/holds/hold_missing/release", "/admin/users/u1/events/evt_missing/replay",
                "/admin/users/nobody/limits/reset"):
        answer = client.post(url, data={"csrf": csrf, "reason": "r"})
        assert answer.status_code == 404, url
    hold = holds.place(deps, "u1", 10, "job")
    answer = client.post(f"/admin/users/u1/holds/{hold['holdId']}/release", data={"csrf": csrf, "reason": "stuck"})
    assert answer.status_code == 200 and "10 tokens become available" in answer.get_data(as_text=True)


def test_unknown_users_and_bad_searches(app, identity):
    client, _, _ = session_for(app, identity, "boss")
    assert client.get("/admin/users?q=nobody@example.com").status_code == 404
    assert client.get("/admin/users?q=").status_code == 400
    assert client.get("/admin/users/nobody").status_code == 404
    assert client.get("/admin/users/u1?cursor=nope").status_code == 400


def test_pages_stay_within_the_content_security_policy(app, identity):
    client, _, _ = session_for(app, identity, "boss")
    for url in ("/admin", "/admin/users/u1", "/admin/signin"):
        answer = client.get(url)
        assert answer.status_code == 200
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
        html = answer.get_data(as_text=True)
        assert not re.search(r"\sstyle=", html), url                        # no inline style attribute
        assert not re.search(r"<style", html), url                          # no style element
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), url          # every script is a file
        assert not re.search(r"\son[a-z]+=", html), url                     # no inline event handler
        assert not re.search(r'(src|href|action)="(https?:)?//', html), url  # nothing from another site


def test_the_dashboard_draws_five_charts_on_the_server(app, identity):
    client, _, _ = session_for(app, identity, "boss")
    html = client.get("/admin").get_data(as_text=True)
    assert html.count("<svg class=\"chart") == 5
    assert len(re.findall(r'<rect class="column"', html)) == 5 * 24
    for key in ("webhooks", "credits", "rejections", "dead_letters", "alerts"):
        assert f'data-series="{key}"' in html


def test_sign_out_needs_the_token_and_clears_the_cookie(app, identity):
    client, cookie, _ = session_for(app, identity, "boss")
    assert client.post("/admin/signout", data={}).status_code == 403
    assert client.get_cookie(COOKIE, path="/admin") is not None
    answer = client.post("/admin/signout", data={"csrf": csrf_token(cookie)})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/admin/signin")
    assert client.get_cookie(COOKIE, path="/admin") is None
    assert client.get("/admin").status_code == 401
