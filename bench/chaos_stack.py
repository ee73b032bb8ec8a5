"""The services of one chaos run, and the supervisor that restarts them.

Redis (no persistence, so a restart loses its data), the Firestore emulator (its JVM is the
process we start, so SIGSTOP/SIGCONT reach it), the Stripe sandbox, gunicorn (web.app), a
Celery worker (prefork) and beat. A supervisor thread restarts the web tier, the worker and beat
when they exit, as a process supervisor would, and records every exit: injected or not.
"""
from __future__ import annotations

import http.client
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench.chaos_proc import Abort, Proc, wait_for
from devstack.processes import free_port
from devstack.processes import FIRESTORE_JAR, ROOT

UNRECOVERABLE = "Unrecoverable error"


class Stack:
    def __init__(self, log_dir: Path, env: dict, worker_concurrency: int = 4):
        self.log_dir = log_dir
        self.env = env
        self.concurrency = worker_concurrency
        self.procs: dict[str, Proc] = {}
        self.history: list[Proc] = []  # every process ever started, for logs and the final stop
        self.exits: list[dict] = []  # exits the supervisor saw: expected (a fault) or not
        self.expected: set[str] = set()  # names whose next exit is a fault we injected
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.generation: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self._supervisor = None

    def spawn(self, name: str, args: list[str]) -> Proc:
        n = self.generation.get(name, 0) + 1
        self.generation[name] = n
        proc = Proc(name, args, self.env, self.log_dir / f"{name}-{n}.log")
        with self.lock:
            self.procs[name] = proc
            self.history.append(proc)
        return proc

    # -- services ------------------------------------------------------------------------------
    def start_redis(self) -> Proc:
        port = self.ports.setdefault("redis", free_port())
        server = shutil.which("redis-server") or "redis-server"
        proc = self.spawn("redis", [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"])
        import redis

        wait_for(lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), 10, "redis")
        return proc

    def spawn_firestore(self) -> Proc:
        port = self.ports.setdefault("firestore", free_port())
        if not FIRESTORE_JAR.exists() or not shutil.which("java"):
            raise RuntimeError(f"the Firestore emulator is missing ({FIRESTORE_JAR}) or java is not installed")
        return self.spawn("firestore", ["java", "-Duser.language=en", "-Xms64m", "-cp", str(FIRESTORE_JAR),
                                        "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
                                        "--host=127.0.0.1", f"--port={port}", f"--rules={ROOT / 'firestore.rules'}"])

    def spawn_sandbox(self) -> Proc:
        port = self.ports.setdefault("sandbox", free_port())
        return self.spawn("sandbox", [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)])

    def spawn_web(self) -> Proc:
        port = self.ports.setdefault("web", free_port())
        return self.spawn("web", [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "web" / "gunicorn.conf.py"),
                                  "--bind", f"127.0.0.1:{port}", "web.app:create_app()"])

    def spawn_worker(self) -> Proc:
        n = self.generation.get("worker", 0) + 1
        return self.spawn("worker", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                                     "--loglevel=INFO", f"--concurrency={self.concurrency}", "--pool=prefork",
                                     "-Q", self.env["CELERY_QUEUE"], f"--hostname=chaos-{os.getpid()}-{n}@%h",
                                     "--without-mingle", "--without-gossip"])

    def spawn_beat(self) -> Proc:
        return self.spawn("beat", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                                   "--loglevel=INFO", f"--schedule={self.log_dir / 'celerybeat-schedule'}"])

    def wait_ready(self, proc: Proc, timeout: float = 90) -> None:
        def http_ok(port: int, path: str) -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", path)
                return conn.getresponse().status == 200
            finally:
                conn.close()

        def ready() -> bool:
            if self.stopping.is_set():
                raise Abort("the run is stopping")
            if not proc.alive():
                raise Abort(f"{proc.name} exited: {proc.log_text()[-2000:]}")
            if proc.name == "firestore":
                return urllib.request.urlopen(f"http://127.0.0.1:{self.ports['firestore']}/", timeout=1).status == 200
            if proc.name in ("sandbox", "web"):
                return http_ok(self.ports[proc.name], "/healthz")
            if proc.name == "worker":
                return "ready." in proc.log_text() and len(proc.children()) >= self.concurrency
            if proc.name == "beat":
                return "beat: Starting..." in proc.log_text()
            return True

        wait_for(ready, timeout, f"{proc.name} to be ready")

    def restart(self, name: str) -> Proc:
        spawn = {"web": self.spawn_web, "worker": self.spawn_worker, "beat": self.spawn_beat}[name]
        proc = spawn()
        self.wait_ready(proc)
        return proc

    # -- the supervisor ------------------------------------------------------------------------
    def supervise(self, names=("web", "worker", "beat")) -> None:
        self._supervisor = threading.Thread(target=self._watch, args=(names,), daemon=True, name="supervisor")
        self._supervisor.start()

    def _watch(self, names) -> None:
        while not self.stopping.is_set():
            for name in names:
                proc = self.procs.get(name)
                if proc is None or proc.alive() or self.stopping.is_set():
                    continue
                died = time.time()
                proc.kill()  # whatever the dead leader left behind, as a container runtime would
                with self.lock:
                    expected = name in self.expected
                    self.expected.discard(name)
                text = proc.log_text()
                record = {"service": name, "pid": proc.pid, "exit_code": proc.popen.returncode, "died_at": died,
                          "expected": expected, "unrecoverable_error": UNRECOVERABLE in text,
                          "log": str(proc.log_path.relative_to(ROOT))}
                if UNRECOVERABLE in text:
                    line = next(l for l in text.splitlines() if UNRECOVERABLE in l)
                    record["error_line"] = line.strip()[:300]
                for attempt in range(3):
                    try:
                        new = self.restart(name)
                        record.update(restarted_at=time.time(), new_pid=new.pid)
                        break
                    except Exception as exc:  # noqa: BLE001 - try again, as a supervisor would
                        record.setdefault("restart_errors", []).append(str(exc)[:300])
                        if self.stopping.is_set():
                            break
                self.exits.append(record)
                if not expected:
                    print(f"chaos: supervisor: {name} (pid {proc.pid}) exited with {proc.popen.returncode}"
                          f"{' (Unrecoverable error)' if record['unrecoverable_error'] else ''}; restarted",
                          flush=True)
            time.sleep(0.2)

    def stop_all(self) -> None:
        self.stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(120)  # a restart in progress finishes first, so its process is known
        order = ("web", "beat", "worker", "sandbox", "firestore", "redis")
        for proc in sorted(self.history, key=lambda p: order.index(p.name) if p.name in order else 0):
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                print(f"chaos: could not stop {proc.name} (pid {proc.pid}): {exc}", file=sys.stderr)
