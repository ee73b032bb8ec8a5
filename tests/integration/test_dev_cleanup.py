"""`make dev` always cleans up (issue 9 §2.3).

Each test runs the real `python -m devstack.dev` in a process group of its own, on ports of
its own below 32768 and a Redis server of its own (so the Redis it starts is ours to check),
waits until it prints its addresses, records every process it started (its descendants in
/proc, plus the Firestore emulator's JVM found by jar and port) BEFORE signalling, then ends
it the way people do and asserts, within a bounded time, that every recorded process is gone
and no process of ours (by its ports) is left:

- Ctrl-C with the pipe reader gone (`make dev | tee log`: tee dies first, EPIPE on stdout);
- SIGTERM to the process group, then a second and a third SIGTERM while it is stopping;
- the terminal going away (its pty hung up: SIGHUP, and EIO on every later write);
- a child that dies during start-up (the Firestore emulator's JVM), and a signal arriving
  during start-up (while the Auth emulator is still starting);
- and, without dev: a service whose leader exited is stopped with everything it forked.

Whatever happens, the test itself SIGKILLs every recorded process that is left.
"""
from __future__ import annotations

import fcntl
import os
import random
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READY = b"Ctrl-C stops everything"
JAR = "cloud-firestore-emulator"
STARTUP_TIMEOUT = 90
GONE_TIMEOUT = 30
# What devstack.dev reads from the environment; the caller's values must not leak in.
_DROPPED = ("TOKENBANK_", "STRIPE_", "CELERY_", "FIRESTORE_", "FIREBASE_", "GOOGLE_", "REDIS_", "FLOWER_",
            "WORKER_", "PROMETHEUS_", "SECRET_", "METRICS_", "WEB_")
_DROPPED_EXACT = ("PORT", "PUBLIC_BASE_URL", "PYTHONUNBUFFERED", "SERVICE_API_KEYS", "LOG_LEVEL")


# --- /proc ---------------------------------------------------------------------------------------

def _stat(pid: int):
    """(ppid, pgid, starttime, state) of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[2]), int(fields[19]), fields[0].decode()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st:
            children.setdefault(st[0], []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(ident: tuple[int, int]) -> bool:
    """Is the process (pid, starttime) still running (not a zombie, not a reused pid)?"""
    st = _stat(ident[0])
    if st is None or st[2] != ident[1]:
        return False
    if st[3] not in ("Z", "X"):
        return True
    try:  # a zombie main thread whose other threads are still exiting
        return len(os.listdir(f"/proc/{ident[0]}/task")) > 1
    except OSError:
        return False


def _ours_by_port(ports: dict[str, int]) -> dict[int, str]:
    """Processes whose command line names one of this run's ports: what a leak looks like."""
    marks = []
    for port in ports.values():
        marks += [f":{port} ", f":{port}/", f"={port} ", f" {port} ", f"-{port}-"]
    found = {}
    for pid in _pids():
        cmd = _cmdline(pid) + " "
        if not any(k in cmd for k in (str(ROOT), "redis-server", JAR, "firebase")):
            continue
        if any(m in cmd for m in marks) and (_stat(pid) or "ZZZZ")[3] != "Z":
            found[pid] = cmd[:160]
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports below the kernel's ephemeral range (32768 and up)."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randint(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


# --- one `python -m devstack.dev` ----------------------------------------------------------------

class Dev:
    """devstack.dev on ports of its own; ``recorded`` holds every process it started."""

    def __init__(self, tmp_path: Path):
        names = ("web", "redis", "firestore", "auth", "stripe", "flower", "metrics")
        self.ports = dict(zip(names, _free_ports(len(names))))
        p = self.ports
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_DROPPED) and k not in _DROPPED_EXACT}
        env.update({
            "TOKENBANK_ENV": "development",
            "PORT": str(p["web"]),
            "REDIS_URL": f"redis://127.0.0.1:{p['redis']}/0",   # nothing answers: dev starts its own
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{p['firestore']}",
            "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{p['auth']}",
            "STRIPE_API_BASE": f"http://127.0.0.1:{p['stripe']}",
            "FLOWER_PORT": str(p["flower"]),
            "WORKER_METRICS_PORT": str(p["metrics"]),
            "WORKER_CONCURRENCY": "1",
        })
        self.env = env
        self.tmp = tmp_path
        self.stderr_path = tmp_path / "dev.stderr"
        self.proc: subprocess.Popen | None = None
        self.helpers: list[subprocess.Popen] = []
        self.recorded: dict[tuple[int, int], str] = {}

    def start(self, **popen) -> subprocess.Popen:
        """dev as the leader of a new process group (a shell job); ``start_new_session`` for a terminal's."""
        if not popen.get("start_new_session"):
            popen["process_group"] = 0
        with open(self.stderr_path, "wb") as stderr:
            popen.setdefault("stderr", stderr)
            self.proc = subprocess.Popen([sys.executable, "-m", "devstack.dev"], cwd=ROOT, env=self.env,
                                         stdin=subprocess.DEVNULL, **popen)
        return self.proc

    def signal_group(self, sig) -> bool:
        """``sig`` to dev's process group (as a terminal or `kill -TERM -PGID` does); False if gone."""
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def record(self) -> None:
        """Every descendant of dev, and the JVM serving our Firestore port, by (pid, starttime)."""
        for pid in _descendants(self.proc.pid):
            st = _stat(pid)
            if st and st[3] != "Z":
                self.recorded[(pid, st[2])] = _cmdline(pid)[:160]
        for pid in _pids():
            cmd = _cmdline(pid)
            if JAR in cmd and f"--port={self.ports['firestore']}" in cmd:
                st = _stat(pid)
                if st:
                    self.recorded[(pid, st[2])] = cmd[:160]

    def record_all(self) -> None:
        """Record twice, a moment apart: late forks (gunicorn's second worker) are caught too."""
        self.record()
        time.sleep(1.0)
        self.record()
        kinds = " ".join(self.recorded.values())
        for needle in ("redis-server", JAR, "firebase", "sandbox", "celery -A worker.celery_app worker",
                       "beat", "flower", "gunicorn"):
            assert needle in kinds, f"{needle} was not among dev's processes: {self.recorded}"

    def assert_all_gone(self, timeout: float = GONE_TIMEOUT) -> float:
        """Wait until dev and every recorded process are gone; the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        left = {}
        while time.monotonic() < deadline:
            left = {ident: cmd for ident, cmd in self.recorded.items() if _alive(ident)}
            if not left and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        strays = _ours_by_port(self.ports)
        assert not left and not strays, (
            f"left running {timeout:.0f} s after the signal (dev exit code {self.proc.poll()}):\n"
            + "\n".join(f"  {pid}: {cmd}" for (pid, _), cmd in left.items())
            + ("\nand by port:\n" + "\n".join(f"  {pid}: {cmd}" for pid, cmd in strays.items()) if strays else "")
            + f"\ndev stderr:\n{self.stderr_tail()}")
        assert self.proc.poll() is not None, "devstack.dev itself did not exit"
        files = [ROOT / ".run" / f"dev-{self.ports['web']}",
                 *(ROOT / ".run").glob(f"auth-emulator-{self.ports['auth']}-*")]
        assert not [f for f in files if f.exists()], f"files of the run left behind: {files}"
        took = time.monotonic() - start
        print(f"everything stopped {took:.1f} s after the signal; dev exit code {self.proc.returncode}")
        return took

    def stderr_tail(self) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-25:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        """The test's own safety net: SIGKILL whatever of this run is left (groups first)."""
        procs = [self.proc, *self.helpers] if self.proc else self.helpers
        for ident in list(self.recorded):
            if _alive(ident):
                try:
                    os.killpg(ident[0], signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.kill(ident[0], signal.SIGKILL)
                except OSError:
                    pass
        for pid in _ours_by_port(self.ports):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    proc.kill()
            proc.wait(10)


@pytest.fixture
def dev(tmp_path):
    run = Dev(tmp_path)
    try:
        yield run
    finally:
        run.cleanup()


def _wait_for(predicate, timeout: float, what: str, dev: Dev):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if dev.proc.poll() is not None:
            pytest.fail(f"devstack.dev exited ({dev.proc.returncode}) waiting for {what}:\n{dev.stderr_tail()}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{dev.stderr_tail()}")


class Drain:
    """A live reader of dev's stdout pipe (the `tee` that does not die)."""

    def __init__(self, stream):
        self.data = b""
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        while chunk := stream.read1(65536):
            self.data += chunk


# --- the cases -----------------------------------------------------------------------------------

def test_ctrl_c_after_tee_died_stops_everything(dev):
    """`make dev | tee log`, Ctrl-C: tee dies first, so every later write to stdout is EPIPE."""
    log = dev.tmp / "tee.log"
    proc = dev.start(stdout=subprocess.PIPE)
    tee = subprocess.Popen(["tee", str(log)], stdin=proc.stdout, stdout=subprocess.DEVNULL,
                           process_group=proc.pid)
    dev.helpers.append(tee)
    proc.stdout.close()
    _wait_for(lambda: log.exists() and READY in log.read_bytes(), STARTUP_TIMEOUT, "dev to be ready", dev)
    dev.record_all()

    tee.send_signal(signal.SIGINT)        # the Ctrl-C reaches tee first: the pipe has no reader
    tee.wait(5)
    assert dev.signal_group(signal.SIGINT)
    dev.assert_all_gone()


def test_second_and_third_sigterm_during_shutdown_stop_everything(dev):
    """SIGTERM to the group, then again twice while it is stopping (as `make` forwards one too)."""
    proc = dev.start(stdout=subprocess.PIPE)
    out = Drain(proc.stdout)
    _wait_for(lambda: READY in out.data, STARTUP_TIMEOUT, "dev to be ready", dev)
    dev.record_all()

    first = time.monotonic()
    assert dev.signal_group(signal.SIGTERM)
    _wait_for(lambda: b"stopping" in out.data, 10, "dev to start stopping", dev)
    assert dev.signal_group(signal.SIGTERM), "dev was gone before the second signal: nothing tested"
    time.sleep(max(0.0, first + 1.3 - time.monotonic()))  # a third one, a moment later ("stop now")
    dev.signal_group(signal.SIGTERM)
    dev.assert_all_gone()


def test_terminal_going_away_stops_everything(dev):
    """dev's stdout and stderr are its controlling terminal; the terminal hangs up (SIGHUP, EIO)."""
    master, slave = os.openpty()

    def take_terminal():  # in the child, after setsid(): the pty becomes its controlling terminal
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)

    try:
        dev.start(stdout=slave, stderr=slave, start_new_session=True, preexec_fn=take_terminal)
    finally:
        os.close(slave)
    seen = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while READY not in seen:
        assert time.monotonic() < deadline and dev.proc.poll() is None, f"dev never became ready:\n{seen[-2000:]!r}"
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 65536)
    dev.record_all()

    os.close(master)                      # the terminal goes away: hangup of the session
    dev.assert_all_gone()


def test_child_dying_during_start_up_stops_everything(dev):
    """The Firestore emulator's JVM dies while starting: dev says so at once, stops the rest, exits 1."""
    proc = dev.start(stdout=subprocess.PIPE)
    out = Drain(proc.stdout)

    def starting_jvm():
        return next((pid for pid in _descendants(proc.pid) if JAR in _cmdline(pid)), None)

    jvm = _wait_for(starting_jvm, STARTUP_TIMEOUT, "the firestore emulator to be starting", dev)
    dev.record()
    assert any("redis-server" in cmd for cmd in dev.recorded.values()), dev.recorded
    os.kill(jvm, signal.SIGKILL)
    dev.assert_all_gone(timeout=15)       # not the emulator's 30 s start-up timeout
    assert proc.returncode == 1, "a child that died must make `make dev` fail"
    assert b"firestore emulator exited" in out.data, out.data[-2000:]


def test_a_service_whose_leader_died_is_stopped_with_its_whole_group(tmp_path):
    """Service.stop() after the process it started exited: what that process forked is stopped too."""
    from devstack.processes import Service, _spawn

    proc, log = _spawn("orphans", ["sh", "-c", "sleep 600 & sleep 600 & echo forked; exit 0"])
    service = Service("orphans", proc, "", log)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while True:
        orphans = {(pid, st[2]) for pid in _pids() if (st := _stat(pid)) and st[1] == proc.pid and st[3] != "Z"}
        if len(orphans) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        assert len(orphans) == 2
        service.stop(timeout=5)
        assert not [ident for ident in orphans if _alive(ident)]
    finally:
        for pid, _ in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_signal_during_start_up_stops_what_was_started(dev):
    """Ctrl-C while the Auth emulator is still starting: the half-started emulator stops too."""
    proc = dev.start(stdout=subprocess.PIPE)
    Drain(proc.stdout)

    def auth_starting():
        return any("firebase" in _cmdline(pid) for pid in _descendants(proc.pid))

    _wait_for(auth_starting, STARTUP_TIMEOUT, "the auth emulator to be starting", dev)
    time.sleep(0.3)
    dev.record()
    assert dev.signal_group(signal.SIGINT)
    dev.assert_all_gone()


def test_a_worker_that_dies_is_restarted_and_the_rest_keeps_running(dev):
    """Issue 10: a Celery worker main process can die (celery/kombu 5.7.0 on a Redis restart with a
    task in flight); `make dev` starts it again instead of stopping the whole system."""
    import urllib.request

    proc = dev.start(stdout=subprocess.PIPE)
    out = Drain(proc.stdout)
    _wait_for(lambda: READY in out.data, STARTUP_TIMEOUT, "dev to be ready", dev)
    dev.record_all()  # first: whatever fails below, the fixture stops all of it
    needle = "celery -A worker.celery_app worker"
    [worker] = [pid for pid in _descendants(proc.pid) if needle in _cmdline(pid) and _stat(pid)
                and needle not in _cmdline(_stat(pid)[0])]  # the main process: its parent is no worker
    os.kill(worker, signal.SIGKILL)
    _wait_for(lambda: b"worker     restarted" in out.data, 30, "the worker to be restarted", dev)
    _wait_for(lambda: any(needle in _cmdline(pid) and pid != worker for pid in _descendants(proc.pid)), 30,
              "a new worker process", dev)
    assert proc.poll() is None  # dev itself kept running
    with urllib.request.urlopen(f"http://127.0.0.1:{dev.ports['web']}/healthz", timeout=5) as resp:
        assert resp.status == 200
    dev.record_all()
    assert dev.signal_group(signal.SIGINT)
    dev.assert_all_gone()
