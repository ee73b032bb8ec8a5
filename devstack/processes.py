"""Real services for tests and `make dev`: started as subprocesses, tracked by PID, always stopped.

Every child is started by `_spawn` in a session of its own, so its pid is the id of a process
group that holds it and everything it forks (gunicorn and Celery workers, a JVM's helpers). A
`ProcessGroup` is stopped as a whole: SIGTERM to the group, SIGKILL to what is left after a
deadline, and it counts as stopped only when no live member is left, even when its leader died
first. `_spawn` registers each group the moment it exists (`live_groups()`), so a process whose
start-up was interrupted is still stopped by whoever calls `stop_groups(live_groups())`.
A group's leader counts until it is reaped (a zombie main thread may still have threads
exiting); single processes are identified by (pid, start time), so a pid or group id reused by
someone else is never signalled.

`STOP` is what a signal handler may set (plain attributes, nothing else, so it is safe to set
from a handler at any moment): `STOP.stopping` makes every `wait_until` give up at once with
`Interrupted`; `STOP.force` makes stops skip their deadline and SIGKILL.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRESTORE_JAR = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
ARTIFACTS = ROOT / "artifacts"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range (20000-32767 by default).

    Not port 0: the kernel hands those out of the ephemeral range, where any outgoing connection
    may take the port before the service binds it, and which other runs on this machine keep to.
    """
    high = min(32767, _ephemeral_low() - 1)
    for _ in range(500):
        port = random.randint(20000, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything taken: whatever the kernel gives
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Interrupted(KeyboardInterrupt):
    """A wait given up because a stop was requested (`STOP.stopping`)."""


class StopRequest:
    """Set from signal handlers: plain attribute writes only (no locks, no I/O), so re-entrant."""

    def __init__(self):
        self.stopping = False
        self.force = False


STOP = StopRequest()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        if STOP.stopping:
            raise Interrupted(f"stopped while waiting for {what}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling a service that is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


# --- processes, by (pid, start time) --------------------------------------------------------------

def proc_stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgid, start time, state) of ``pid`` from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), int(fields[2]), int(fields[19]), fields[0].decode()


def _live(pid: int, st: tuple[int, int, int, str] | None) -> bool:
    """Not gone: /proc shows a zombie main thread while the process's other threads still exit."""
    if st is None:
        return False
    if st[3] not in ("Z", "X"):
        return True
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def proc_table() -> dict[int, tuple[int, int, int, str]]:
    """Every live (not zombie) process: pid -> (ppid, pgid, start time, state)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if _live(int(name), st):
                table[int(name)] = st
    return table


def descendants(root: int, table: dict | None = None) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time."""
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, st in table.items():
        children.setdefault(st[0], []).append(pid)
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    return found


def is_running(pid: int, starttime: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[2] == starttime and _live(pid, st)


def _signal_pid(pid: int, starttime: int, sig: int) -> None:
    if is_running(pid, starttime):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


class ProcessGroup:
    """A child started in a session of its own: its pid is the id of the group of all it forked."""

    def __init__(self, proc: subprocess.Popen, name: str = ""):
        self.proc = proc
        self.name = name
        self.pgid = proc.pid

    def members(self, table: dict | None = None) -> list[int]:
        """Live processes of the group ([] once it is empty, or if its id now belongs to another)."""
        if self.proc.poll() is None:  # our child, not reaped yet: a member whatever /proc shows
            table = proc_table() if table is None else table
            return [self.pgid] + [pid for pid, st in table.items() if st[1] == self.pgid and pid != self.pgid]
        table = proc_table() if table is None else table
        leader = table.get(self.pgid)
        if leader is not None and leader[1] == self.pgid:
            return []  # reaped, and its pid now leads someone else's group: never ours to signal
        return [pid for pid, st in table.items() if st[1] == self.pgid]

    def done(self, table: dict | None = None) -> bool:
        return not self.members(table)

    def signal(self, sig: int) -> None:
        if self.members():
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def __repr__(self) -> str:
        return f"ProcessGroup({self.name or self.proc.args!r}, pgid={self.pgid})"


_LIVE: list[ProcessGroup] = []  # every group _spawn started that is not known to be stopped


def live_groups() -> list[ProcessGroup]:
    """The groups spawned in this process and not yet stopped, in start order."""
    return list(_LIVE)


def _group_of(proc: subprocess.Popen) -> ProcessGroup:
    for group in _LIVE:
        if group.proc is proc:
            return group
    return ProcessGroup(proc)


def stop_groups(groups: list[ProcessGroup], sig: int = signal.SIGTERM, timeout: float = 10.0,
                kill_timeout: float = 5.0) -> list[ProcessGroup]:
    """Stop ``groups`` together: ``sig`` to each, SIGKILL to what is left after ``timeout`` s
    (at once if `STOP.force` is set), then wait up to ``kill_timeout`` s. Returns what is still
    running (nothing, unless a process is stuck in the kernel). Never raises on a vanished process."""
    left = [g for g in groups if not g.done()]
    if sig != signal.SIGKILL:
        for group in left:
            group.signal(sig)
        left = _wait_groups(left, timeout)
    for group in left:
        group.signal(signal.SIGKILL)
    left = _wait_groups(left, kill_timeout, stop_on_force=False)
    for group in groups:
        group.proc.poll()
        if group not in left and group in _LIVE:
            _LIVE.remove(group)
    return left


def _wait_groups(groups: list[ProcessGroup], timeout: float, stop_on_force: bool = True) -> list[ProcessGroup]:
    deadline = time.monotonic() + timeout
    while groups and time.monotonic() < deadline and not (stop_on_force and STOP.force):
        time.sleep(0.05)
        table = proc_table()
        groups = [g for g in groups if not g.done(table)]
    return groups


def stop_pids(pids: dict[int, int], timeout: float = 3.0) -> list[int]:
    """Stop single processes given as pid -> start time (SIGTERM, SIGKILL after ``timeout``)."""
    left = {pid: t for pid, t in pids.items() if is_running(pid, t)}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for pid, t in left.items():
            _signal_pid(pid, t, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline and not (sig == signal.SIGTERM and STOP.force):
            time.sleep(0.05)
            left = {pid: t for pid, t in left.items() if is_running(pid, t)}
    return sorted(left)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    address: str
    log_path: Path
    extra: dict = field(default_factory=dict)
    group: ProcessGroup = field(init=False, repr=False)

    def __post_init__(self):
        self.group = _group_of(self.proc)
        self.group.name = self.group.name or self.name

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the whole process group (even if its leader already died): ``sig``, then SIGKILL."""
        stop_groups([self.group], sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _spawn(name: str, args: list[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[subprocess.Popen, Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    _LIVE.append(ProcessGroup(proc, name))  # tracked before anything else can happen
    return proc, log_path


def _wait_started(service: Service, ready, timeout: float, what: str = "") -> None:
    """Wait until ``ready()`` or the service dies (RuntimeError at once); stop it on any failure."""
    try:
        wait_until(lambda: not service.alive() or ready(), timeout, 0.1, what=what or service.name)
        if not service.alive():
            raise RuntimeError(f"{what or service.name} exited (code {service.proc.returncode}):\n{service.log_tail()}")
    except BaseException:
        service.stop()
        raise


def start_redis(port: int | None = None) -> Service:
    server = shutil.which("redis-server")
    if not server:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    port = port or free_port()
    proc, log = _spawn("redis", [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    service = Service("redis", proc, f"127.0.0.1:{port}", log, {"port": port})
    import redis

    _wait_started(service, lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), 10)
    return service


def start_firestore(port: int | None = None, rules: Path | None = ROOT / "firestore.rules") -> Service:
    if not FIRESTORE_JAR.exists() or not shutil.which("java"):
        raise RuntimeError(
            f"the Cloud Firestore emulator is missing ({FIRESTORE_JAR}): "
            "apt-get install google-cloud-cli-firestore-emulator openjdk-17-jre-headless")
    port = port or free_port()
    args = ["java", "-Duser.language=en", "-Xms64m", "-cp", str(FIRESTORE_JAR),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
            "--host=127.0.0.1", f"--port={port}"]
    if rules is not None and rules.exists():
        args.append(f"--rules={rules}")
    proc, log = _spawn("firestore", args)
    service = Service("firestore", proc, f"127.0.0.1:{port}", log, {"port": port})
    _wait_started(service, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200, 30,
                  "firestore emulator")
    return service


def clear_firestore(host: str, project: str, attempts: int = 20) -> None:
    """Delete every document of the project. The emulator answers 409 while a transaction (a
    worker's background job still running) holds locks: try again shortly."""
    req = urllib.request.Request(f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents",
                                 method="DELETE")
    for attempt in range(attempts):
        try:
            urllib.request.urlopen(req, timeout=10).read()
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 409 or attempt == attempts - 1:
                raise
            time.sleep(0.25)


def service_env(*, redis_url: str, firestore_host: str, project: str, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBANK_", "STRIPE_", "CELERY_"))}
    env.update({
        "TOKENBANK_ENV": "test",
        "REDIS_URL": redis_url,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "GOOGLE_CLOUD_PROJECT": project,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "INFO",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start_worker(env: dict, concurrency: int = 4, name: str = "worker", pool: str = "prefork") -> Service:
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO",
            f"--concurrency={concurrency}", f"--pool={pool}", "-Q", env.get("CELERY_QUEUE", "tokenbank"),
            f"--hostname={name}-{os.getpid()}-{time.monotonic_ns()}@%h", "--without-mingle", "--without-gossip"]
    proc, log = _spawn(name, args, env=env)
    service = Service(name, proc, "", log)
    _wait_started(service, lambda: b"ready." in log.read_bytes(), 60, "celery worker")
    return service


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status < 500
    except Exception:  # noqa: BLE001 - not up yet
        return False


def start_http_service(name: str, args: list[str], env: dict, ready_url: str, timeout: float = 60) -> Service:
    """Start a process and wait until ``ready_url`` answers (or the process dies)."""
    proc, log = _spawn(name, args, env=env)
    service = Service(name, proc, ready_url, log)
    _wait_started(service, lambda: http_ok(ready_url), timeout, name)
    return service


def start_web(env: dict, port: int, workers: int = 2) -> Service:
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "web" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "web.app:create_app()"]
    return start_http_service("web", args, env, f"http://127.0.0.1:{port}/healthz")


def start_sandbox(env: dict, port: int | None = None, webhook_urls: list[str] = (), secrets: str = "",
                  host: str = "127.0.0.1") -> Service:
    """The local Stripe sandbox (sandbox/), delivering signed webhooks to ``webhook_urls``."""
    port = port or free_port()
    args = [sys.executable, "-m", "sandbox", "--host", host, "--port", str(port)]
    for url in webhook_urls:
        args += ["--webhook-url", url]
    if secrets:
        args += ["--webhook-secret", secrets]
    service = start_http_service("stripe-sandbox", args, env, f"http://{host}:{port}/healthz")
    service.address = f"http://{host}:{port}"
    return service
