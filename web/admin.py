"""The support console at /admin: server-rendered pages for support staff (README, "Support console").

    GET  /admin/signin                               sign-in page (open)
    POST /admin/session                              Authorization: Bearer <ID token> -> session cookie (open)
    POST /admin/signout                              ends the session (open; the CSRF token is still required)
    GET  /admin                                      the last 24 hours, and the search box
    GET  /admin/users?q=<email or uid>               find a user -> 303 to their page
    GET  /admin/users/<uid>[?cursor=]                everything about the user's money
    POST /admin/users/<uid>/adjust                   \\
    POST /admin/users/<uid>/holds/<hold>/release      | step=review: what will happen (nothing changes);
    POST /admin/users/<uid>/events/<event>/replay     | step=confirm: done once, logged in ops_log
    POST /admin/users/<uid>/limits/reset             /

Every other route is behind web/admin_guard.py, run before each request of this blueprint.
Views are thin: each calls one function of core/services/support*.py or dashboard.py.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, make_response, redirect, render_template, request, url_for

from core.domain.errors import (
    AccountFrozen, HoldConflict, HoldExpired, InsufficientFunds, InvalidRequest, KeyConflict, Refusal, Unauthorized,
    UnknownHold, UnknownUser,
)
from core.services import dashboard, support, support_access, support_actions
from web import admin_charts, admin_guard

bp = Blueprint("admin_console", __name__, url_prefix="/admin")
PUBLIC = frozenset({"admin_console.signin_page", "admin_console.start_session", "admin_console.sign_out"})
REFUSAL_STATUS = ((InvalidRequest, 400), (UnknownUser, 404), (UnknownHold, 404), (InsufficientFunds, 409),
                  (KeyConflict, 409), (HoldConflict, 409), (HoldExpired, 410), (AccountFrozen, 423))
admin_charts.register_filters(bp)


def _deps():
    return current_app.config["TOKENBANK_DEPS"]


def _page(template: str, status: int = 200, **context):
    settings = _deps().settings
    emulator = settings.firebase_auth_emulator_host
    google = "https://identitytoolkit.googleapis.com/v1", "https://securetoken.googleapis.com/v1"
    auth_base, token_base = ((f"http://{emulator}/identitytoolkit.googleapis.com/v1",
                              f"http://{emulator}/securetoken.googleapis.com/v1") if emulator else google)
    return render_template(f"admin/{template}", operator=g.get("operator"), csrf=g.get("csrf"),
                           auth_base=auth_base, token_base=token_base, api_key=settings.firebase_web_api_key,
                           emulator=bool(emulator), **context), status


def _refusal(status: int, message: str):
    if status == 401 and request.method in admin_guard.SAFE_METHODS:
        ended = request.cookies.get(admin_guard.COOKIE)  # no cookie: nothing to explain, just sign in
        return _page("signin.html", 401, message=f"Your session ended ({message}); sign in again." if ended else None)
    title = {401: "Please sign in again", 403: "Not allowed"}.get(status, "Refused")
    return _page("message.html", status, title=title, message=message)


@bp.before_request
def guard():
    return admin_guard.check(PUBLIC, _refusal)


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"  # customers' data: never kept by a browser or proxy
    return response


@bp.errorhandler(Refusal)
def refused(exc: Refusal):
    status = getattr(exc, "status", None) or next((s for kind, s in REFUSAL_STATUS if isinstance(exc, kind)), 409)
    uid = (request.view_args or {}).get("uid")
    return _page("message.html", status, title="Refused", message=getattr(exc, "message", None) or str(exc),
                 back=url_for(".user_page", uid=uid) if uid else None)


# --- sign-in ---------------------------------------------------------------------------------

@bp.get("/signin")
def signin_page():
    return _page("signin.html")


@bp.post("/session")
def start_session():
    """The page's script sends a fresh ID token as a bearer header (CSRF-safe: another site's
    page cannot set that header); the answer sets the session cookie."""
    if not admin_guard.same_origin():
        return jsonify(error="forbidden", message="sign in from the support console itself"), 403
    try:
        session = support_access.sign_in(_deps(), request.headers.get("Authorization"))
    except Unauthorized as exc:
        return jsonify(error="unauthorized", message=exc.reason), 401
    response = jsonify(support=session.support, email=session.person.email, uid=session.person.uid)
    admin_guard.set_session_cookie(response, session.cookie, session.max_age)
    return response


@bp.post("/signout")
def sign_out():
    cookie = request.cookies.get(admin_guard.COOKIE)
    if cookie and not (admin_guard.same_origin() and support_access.csrf_ok(cookie, request.form.get("csrf"))):
        return _page("message.html", 403, title="Not allowed", message="forged request refused")
    response = make_response(redirect(url_for(".signin_page"), 303))
    admin_guard.clear_session_cookie(response)
    return response


# --- pages -----------------------------------------------------------------------------------

@bp.get("")
def home():
    board = dashboard.last_24_hours(_deps())
    return _page("dashboard.html", board=board, charts=[admin_charts.bar_chart(s, board["hours"])
                                                        for s in board["series"]])


@bp.get("/users")
def find():
    try:
        uid = support_access.find_user(_deps(), request.args.get("q"))
    except (InvalidRequest, UnknownUser) as exc:
        status = 400 if isinstance(exc, InvalidRequest) else 404
        return _page("message.html", status, title="No such user", message=str(exc), query=request.args.get("q"))
    return redirect(url_for(".user_page", uid=uid), 303)


@bp.get("/users/<uid>")
def user_page(uid: str):
    return _page("user.html", view=support.user_view(_deps(), uid, request.args.get("cursor")))


# --- actions: review, then confirm -------------------------------------------------------------

def _act(action: str, uid: str, **target: str):
    form = {**request.form.to_dict(), **target}
    if request.form.get("step") == "confirm":
        done = support_actions.perform(_deps(), current_app.config["TOKENBANK_QUEUE"], g.operator, action, uid, form)
        return _page("done.html", done=done)
    return _page("confirm.html", plan=support_actions.review(_deps(), action, uid, form),
                 endpoint=request.path)


@bp.post("/users/<uid>/adjust")
def adjust(uid: str):
    return _act("adjust", uid)


@bp.post("/users/<uid>/holds/<hold_id>/release")
def release_hold(uid: str, hold_id: str):
    return _act("release_hold", uid, holdId=hold_id)


@bp.post("/users/<uid>/events/<event_id>/replay")
def replay_event(uid: str, event_id: str):
    return _act("replay_event", uid, eventId=event_id)


@bp.post("/users/<uid>/limits/reset")
def reset_limits(uid: str):
    return _act("reset_limits", uid)


# Resend an outgoing event: with the outgoing-events work (another branch), a route here —
# POST /users/<uid>/outgoing/<id>/resend -> _act("resend_outgoing", uid, outgoingId=id) — and its
# action in core/services/support_actions.py ACTIONS. The guard covers it like every route.
