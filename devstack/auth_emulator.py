"""The Firebase Auth emulator (npm firebase-tools, pinned in devstack/firebase/), run fully offline.

    service = start_auth_emulator()            # free port, project demo-tokenbank
    uid, token = sign_up(service.address, "a@example.com", "secret123")
    ...                                        # FIREBASE_AUTH_EMULATOR_HOST=service.address
    service.stop()                             # by PID: SIGTERM to its process group

The emulator is the real `node` process (no npx/sh wrapper), started in a session of its own so
stopping it kills the whole group and leaves no orphan. It gets a HOME, XDG dirs and TMPDIR of its
own under .run/ (removed on stop), a generated firebase.json with its ports (auth, hub, logging), and
the settings that keep firebase-tools off the network: CI=true (no MOTD fetch, no update check),
NO_UPDATE_NOTIFIER=1, a config store with usage (analytics) off, a `demo-` project (no Google
project look-ups) and --non-interactive.

By hand: `python -m devstack.auth_emulator --port 9099` (Ctrl-C stops it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from devstack.processes import ROOT, Service, _spawn, free_port, http_ok, wait_until

FIREBASE_DIR = ROOT / "devstack" / "firebase"
FIREBASE_BIN = FIREBASE_DIR / "node_modules" / ".bin" / "firebase"
RUN_ROOT = ROOT / ".run"
DEFAULT_PROJECT = "demo-tokenbank"
INSTALL_HINT = ("run `make install`, or: cd devstack/firebase && npm ci --no-audit --no-fund "
                "(installs the pinned firebase-tools into devstack/firebase/node_modules)")
# Only these are passed through from the caller's environment: no credentials, proxies or emulator
# hosts of the caller's can reach firebase-tools.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


class AuthEmulatorError(RuntimeError):
    """The emulator answered an Identity Toolkit call with an error (e.g. EMAIL_EXISTS)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"auth emulator answered {status}: {message}")
        self.status = status
        self.message = message


def ensure_installed() -> Path:
    """The firebase CLI of devstack/firebase/node_modules, or a RuntimeError telling how to install it."""
    if not shutil.which("node"):
        raise RuntimeError("node is not installed (the Firebase Auth emulator needs Node.js >= 20): "
                           "apt-get install -y nodejs npm")
    if not FIREBASE_BIN.exists():
        raise RuntimeError(f"firebase-tools is not installed ({FIREBASE_BIN} is missing): {INSTALL_HINT}")
    return FIREBASE_BIN


class AuthEmulator(Service):
    """A Service whose stop() also removes the emulator's private HOME/TMPDIR."""

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        super().stop(sig, timeout)
        run_dir = self.extra.get("run_dir")
        if run_dir and self.proc.poll() is not None:
            shutil.rmtree(run_dir, ignore_errors=True)


def _offline_env(run_dir: Path) -> dict:
    home = run_dir / "home"
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(run_dir / "tmp"),                      # the hub's locator file lives here
        "FIREBASE_DEBUG_PATH": str(run_dir / "firebase-debug.log"),
        "FIREBASE_EMULATORS_PATH": str(home / ".cache" / "firebase" / "emulators"),
        "CI": "true",                                        # no MOTD fetch, no update check (is-ci)
        "NO_UPDATE_NOTIFIER": "1",
    })
    for d in ("home/.config/configstore", "home/.cache", "tmp"):
        (run_dir / d).mkdir(parents=True, exist_ok=True)
    # firebase-tools sends analytics only when its config store says usage: true; say false.
    (home / ".config" / "configstore" / "firebase-tools.json").write_text(json.dumps({"usage": False}))
    return env


def start_auth_emulator(port: int | None = None, project: str = DEFAULT_PROJECT, timeout: float = 120) -> Service:
    """Start the Auth emulator on 127.0.0.1:``port`` (a free one by default) for ``project``.

    ``project`` must start with ``demo-``: for any other id firebase-tools tries to reach Google.
    Returns once the emulator answers HTTP; ``address`` is ``127.0.0.1:PORT`` (the value for
    FIREBASE_AUTH_EMULATOR_HOST); ``extra`` has port, project, run_dir and the log of firebase-tools.
    """
    if not project.startswith("demo-"):
        raise ValueError(f"use a demo- project id for the emulator (got {project!r}): "
                         "other ids make firebase-tools contact Google")
    firebase = ensure_installed().resolve()
    node = shutil.which("node")
    port = port or free_port()
    RUN_ROOT.mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"auth-emulator-{port}-", dir=RUN_ROOT))
    env = _offline_env(run_dir)
    config = run_dir / "firebase.json"
    config.write_text(json.dumps({"emulators": {
        "auth": {"host": "127.0.0.1", "port": port},
        "hub": {"host": "127.0.0.1", "port": free_port()},
        "logging": {"host": "127.0.0.1", "port": free_port()},
        "ui": {"enabled": False},
        "singleProjectMode": True,
    }}, indent=2))
    args = [node, str(firebase), "emulators:start", "--only", "auth", "--project", project,
            "--config", str(config), "--non-interactive"]
    proc, log = _spawn("auth-emulator", args, env=env, cwd=run_dir)
    address = f"127.0.0.1:{port}"
    service = AuthEmulator("auth-emulator", proc, address, log,
                           {"port": port, "project": project, "run_dir": str(run_dir)})
    try:
        wait_until(lambda: http_ok(f"http://{address}/") or not service.alive(), timeout, 0.1,
                   what="firebase auth emulator")
    except TimeoutError:
        service.stop()
        raise
    if not service.alive():
        service.stop()
        raise RuntimeError(f"the auth emulator exited (code {proc.returncode}):\n{service.log_tail()}")
    return service


# --- the Identity Toolkit REST API, as the browser SDK calls it ------------------------------------

def _url(host: str, path: str) -> str:
    base = host if host.startswith(("http://", "https://")) else f"http://{host}"
    return base.rstrip("/") + path


def _call(method: str, url: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = raw.decode(errors="replace")[:500]
        raise AuthEmulatorError(exc.code, message) from None
    return json.loads(raw) if raw else {}


def sign_up(host: str, email: str, password: str) -> tuple[str, str]:
    """Create an email/password user; returns (uid, ID token)."""
    out = _call("POST", _url(host, "/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"),
                {"email": email, "password": password, "returnSecureToken": True})
    return out["localId"], out["idToken"]


def sign_in(host: str, email: str, password: str) -> tuple[str, str]:
    """Sign in an existing email/password user; returns (uid, a fresh ID token)."""
    out = _call("POST", _url(host, "/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=any"),
                {"email": email, "password": password, "returnSecureToken": True})
    return out["localId"], out["idToken"]


def clear_accounts(host: str, project: str = DEFAULT_PROJECT) -> None:
    """Delete every user of ``project`` in the emulator."""
    _call("DELETE", _url(host, f"/emulator/v1/projects/{project}/accounts"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.auth_emulator",
                                     description="Run the Firebase Auth emulator offline until Ctrl-C.")
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    opts = parser.parse_args(argv)
    service = start_auth_emulator(opts.port, opts.project)
    print(f"auth emulator pid {service.pid} on {service.address}, project {opts.project}\n"
          f"  export FIREBASE_AUTH_EMULATOR_HOST={service.address}\n  log: {service.log_path}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if not service.alive():
                print(f"the auth emulator exited:\n{service.log_tail()}")
                return 1
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
