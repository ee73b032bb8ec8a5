"""Headless Chromium for browser tests: the machine's Debian `chromium`, driven by Playwright.

Playwright's own browser downloads are never used (nothing can be fetched here): we launch
/usr/bin/chromium through ``executable_path``. Playwright gives every launch a fresh, temporary
user-data-dir and removes it on close.

    with browser() as b:
        page = new_page(b, phone=True)
        page.goto(url)
        screenshot(page, "checkout-phone")
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TOKENBANK_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Nothing outside this machine is reachable here, and tests must not depend on it: every host
    # name but localhost resolves to NOTFOUND at once, with no DNS query (Chromium otherwise looks up
    # accounts.google.com and update.googleapis.com even with the switches above). Pages under test
    # use 127.0.0.1 / localhost; a page that reaches for a CDN fails fast instead of hanging.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def chromium_missing_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can (playwright itself is a test dependency)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium (or make install)"
    return None


@contextmanager
def browser(*, timeout_ms: float = 30_000):
    """A Playwright Browser on the system Chromium; closed (and its process gone) on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                               timeout=timeout_ms)
        try:
            yield b
        finally:
            b.close()


def new_page(b, *, phone: bool = False, base_url: str | None = None, timeout_ms: float = 10_000):
    """A page in a context of its own (no shared cookies/storage). ``phone``: 390x844, touch, mobile."""
    options: dict = {"viewport": PHONE if phone else DESKTOP, "locale": "en-US", "service_workers": "block"}
    if phone:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    if base_url:
        options["base_url"] = base_url
    context = b.new_context(**options)
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    return page


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of the page under artifacts/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"
    path = SCREENSHOTS / (safe if safe.endswith(".png") else f"{safe}.png")
    page.screenshot(path=str(path), full_page=full_page)
    return path
