"""The sandbox served to the real `stripe` SDK in-process: no socket, no thread, no port.

``client()`` returns a ``stripe.StripeClient`` whose HTTP client hands each request to a
fresh sandbox app through Flask's test client, so unit tests can check what the SDK
really sends (form encoding, ``Stripe-Version``) and what the sandbox answers. The same
rules apply as over HTTP; webhooks go nowhere (no endpoints are configured).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import stripe

from .app import create_app
from .config import Config

TEST_KEY = "sk_test_inprocess_sandbox"
BASE = "http://sandbox.inprocess"


class InProcessHTTPClient(stripe.HTTPClient):
    name = "sandbox-inprocess"

    def __init__(self, app):
        super().__init__()
        self.app = app
        self.test_client = app.test_client()
        self.requests: list[dict] = []  # method, path, headers, body of every request, for assertions

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = dict(headers or {})
        self.requests.append({"method": method.upper(), "path": parts.path, "headers": sent, "body": post_data or ""})
        resp = self.test_client.open(path, method=method.upper(), headers=sent, data=post_data or None)
        return resp.get_data(as_text=True), resp.status_code, dict(resp.headers)

    def request_stream(self, method, url, headers, post_data=None, *, _usage=None):
        raise NotImplementedError("the in-process sandbox does not stream")

    def close(self):
        pass


def client(config: Config | None = None, **client_options) -> stripe.StripeClient:
    """A StripeClient talking to a new in-process sandbox; ``.http`` is its InProcessHTTPClient."""
    app = create_app(config or Config(), BASE)
    http = InProcessHTTPClient(app)
    stripe.enable_telemetry = False
    sdk = stripe.StripeClient(TEST_KEY, base_addresses={"api": BASE}, http_client=http, **client_options)
    sdk.http = http  # type: ignore[attr-defined]
    sdk.sandbox = app.config["SANDBOX"]  # type: ignore[attr-defined]
    return sdk
