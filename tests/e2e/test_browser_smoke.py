"""The browser infrastructure works: headless system Chromium opens a local page, clicks, sees the DOM change.

Needs none of the e2e system (no Redis, Firestore, web tier): only /usr/bin/chromium and playwright.
"""
from __future__ import annotations

import http.server
import threading

import pytest

from devstack.processes import free_port
from tests.e2e.browser_support import browser, chromium_missing_reason, new_page, screenshot

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>smoke</title></head>
<body>
  <h1 id="status">waiting</h1>
  <button id="go" onclick="document.getElementById('status').textContent = 'clicked ' + window.innerWidth">Go</button>
</body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_site():
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_click_changes_the_dom(local_site, phone):
    with browser() as b:
        page = new_page(b, phone=phone)
        page.goto(local_site + "/")
        assert page.text_content("#status") == "waiting"
        page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('clicked')")
        width = 390 if phone else 1280
        assert page.text_content("#status") == f"clicked {width}"
        path = screenshot(page, f"browser-smoke-{'phone' if phone else 'desktop'}")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hosts_outside_this_machine_fail_fast():
    """--host-resolver-rules: a page reaching for a CDN gets a name error at once, no DNS wait."""
    import time

    from playwright.sync_api import Error as PlaywrightError

    with browser() as b:
        page = new_page(b)
        started = time.monotonic()
        with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED"):
            page.goto("https://cdn.example.com/firebase-app.js")
        assert time.monotonic() - started < 5
