"""The processes one benchmark run starts, each tracked by PID and stopped in ``stop_all``.

Services are started in their own sessions (process groups), as tests/support/processes.py
does, so a Ctrl-C in the terminal reaches only the harness, whose ``finally`` stops them.
"""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack import processes
from devstack.processes import ARTIFACTS, ROOT, Service, free_port, wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Stack:
    def __init__(self, tag: str):
        self.tag = tag
        self.services: list[Service] = []
        self.others: list = []  # Popen / multiprocessing.Process objects (load generators)

    # -- starting -----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict) -> Service:
        ARTIFACTS.mkdir(exist_ok=True)
        log_path = ARTIFACTS / f"bench-{self.tag}-{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
        service = Service(name, proc, "", log_path)
        self.services.append(service)
        return service

    def firestore(self) -> Service:
        service = processes.start_firestore()
        self.services.append(service)
        return service

    def redis(self) -> Service:
        service = processes.start_redis()
        self.services.append(service)
        return service

    def gunicorn(self, name: str, app_spec: str, env: dict) -> Service:
        port = free_port()
        env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
        service = self._spawn(name, [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "web" / "gunicorn.conf.py"),
                                     app_spec], env)
        service.address = f"127.0.0.1:{port}"
        service.extra["port"] = port

        def healthy():
            if not service.alive():
                raise RuntimeError(f"gunicorn {name} exited:\n{service.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", "/healthz")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        try:
            wait_until(healthy, 60, 0.1, what=f"gunicorn {name}")
        except Exception:
            print(service.log_tail(), file=sys.stderr)
            raise
        # Every worker process must be up, not only the first one that answered.
        workers = int(env.get("WEB_CONCURRENCY", "2"))
        wait_until(lambda: len(tree_pids(service.pid)) >= workers + 1, 30, 0.1, what=f"{workers} gunicorn workers")
        return service

    def celery(self, name: str, app_module: str, env: dict, concurrency: int, queue: str) -> Service:
        args = [sys.executable, "-m", "celery", "-A", app_module, "worker", "--loglevel=INFO",
                f"--concurrency={concurrency}", "--pool=prefork", "-Q", queue,
                f"--hostname={name}-{os.getpid()}@%h", "--without-mingle", "--without-gossip"]
        service = self._spawn(name, args, env)
        try:
            wait_until(lambda: b"ready." in service.log_path.read_bytes() or not service.alive(), 60, 0.1,
                       what=f"celery worker {name}")
        except TimeoutError:
            self.stop(service)
            raise
        if not service.alive():
            raise RuntimeError(f"celery worker {name} exited:\n{service.log_tail()}")
        wait_until(lambda: len(tree_pids(service.pid)) >= concurrency + 1, 30, 0.1,
                   what=f"{concurrency} celery pool processes")
        return service

    def track(self, proc) -> None:
        self.others.append(proc)

    # -- stopping -----------------------------------------------------------------------
    def stop(self, service: Service, timeout: float = 15.0) -> None:
        service.stop(signal.SIGTERM, timeout)
        if service in self.services:
            self.services.remove(service)

    def stop_all(self) -> None:
        for proc in reversed(self.others):
            try:
                if hasattr(proc, "poll"):  # subprocess.Popen
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(5)
                elif proc.is_alive():  # multiprocessing.Process
                    proc.kill()
                    proc.join(5)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                print(f"bench: could not stop {proc}: {exc}", file=sys.stderr)
        self.others.clear()
        for service in reversed(list(self.services)):
            try:
                self.stop(service, 10.0)
            except Exception as exc:  # noqa: BLE001
                print(f"bench: could not stop {service.name} (pid {service.pid}): {exc}", file=sys.stderr)


# -- CPU accounting from /proc --------------------------------------------------------------
def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / CLK_TCK


def machine_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine by kind, from /proc/stat: processes (user+nice+system),
    interrupts (irq+softirq: mostly loopback TCP here) and steal (taken by the hypervisor)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]] + [0] * 8
    return {"processes": (f[0] + f[1] + f[2]) / CLK_TCK, "irq": (f[5] + f[6]) / CLK_TCK, "steal": f[7] / CLK_TCK}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    return sum(machine_cpu().values())


class CpuMeter:
    """CPU seconds used by named process trees between ``start`` and ``stop``."""

    def __init__(self, roots: dict[str, int]):
        """roots: name -> PID of a process tree; a negative PID counts that one process alone."""
        self.roots = {k: v for k, v in roots.items() if v}
        self.before: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: cpu_seconds([-pid] if pid < 0 else tree_pids(pid)) for name, pid in self.roots.items()}
        t = os.times()
        sample["harness"] = t.user + t.system
        sample["load generator"] = t.children_user + t.children_system
        for kind, seconds in machine_cpu().items():
            sample[f"machine {kind}"] = seconds
        return sample

    def start(self) -> "CpuMeter":
        self.before = self._sample()
        self.wall = time.monotonic()
        return self

    def stop(self) -> dict:
        after = self._sample()
        wall = time.monotonic() - self.wall
        used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        machine = {kind: used.pop(f"machine {kind}") for kind in ("processes", "irq", "steal")}
        # Processes this run did not start: other sessions' tests, the machine's own services.
        ours = sum(v for k, v in used.items() if self.roots.get(k, 1) > 0)  # a lone process is inside a tree
        used["not ours"] = max(0.0, machine["processes"] - ours)
        used["kernel irq"] = machine["irq"]
        used["steal"] = machine["steal"]
        cores = {k: round(v / wall, 2) for k, v in used.items() if wall > 0}
        return {"wall_seconds": wall, "cores_used": cores,
                "machine_cores_busy": round(sum(machine.values()) / wall, 2),
                "other_cores": cores.get("not ours", 0.0)}
