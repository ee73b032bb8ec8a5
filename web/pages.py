"""Server-rendered pages: the purchase page, the success and cancel pages."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request

from core.services.accounts import valid_session_id
bp = Blueprint("pages", __name__)


def _page(template: str, status: int = 200, **context):
    deps = current_app.config["TOKENBANK_DEPS"]
    settings = deps.settings
    emulator = settings.firebase_auth_emulator_host
    auth_base = (f"http://{emulator}/identitytoolkit.googleapis.com/v1" if emulator
                 else "https://identitytoolkit.googleapis.com/v1")
    token_base = (f"http://{emulator}/securetoken.googleapis.com/v1" if emulator
                  else "https://securetoken.googleapis.com/v1")
    return render_template(
        template, packages=deps.catalog.packages, plans=deps.catalog.plans, publishable_key=settings.stripe_publishable_key,
        auth_base=auth_base, token_base=token_base, api_key=settings.firebase_web_api_key,
        emulator=bool(settings.firebase_auth_emulator_host), **context), status


@bp.get("/")
def index():
    return redirect("/buy-tokens")


@bp.get("/buy-tokens")
def buy_tokens():
    return _page("buy_tokens.html")


@bp.get("/purchase/success")
def success():
    session_id = request.args.get("session_id", "")
    if not valid_session_id(session_id):
        return _page("message.html", 400, title="Unknown checkout",
                     message="This link does not name a checkout session. Your purchases are listed on the "
                             "tokens page.")
    return _page("success.html", session_id=session_id)


@bp.get("/purchase/cancel")
def cancel():
    return _page("message.html", title="Checkout cancelled",
                 message="Nothing was charged. You can pick a package again whenever you like.")

