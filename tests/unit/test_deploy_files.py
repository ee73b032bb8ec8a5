"""The deployment files name what exists: Dockerfile.web, Dockerfile.worker, .dockerignore,
docker-compose.yml, cloudbuild.yaml, cloudbuild-dev.yaml, requirements.lock, requirements-test.lock
and the Makefile's install step, parsed and checked against the source (no docker engine, no sockets).

- every command's module or file exists (web.app:create_app, worker.celery_app,
  web/gunicorn.conf.py, python -m sandbox);
- every environment variable the files set is one the code reads (core/config.py,
  core/adapters/secret_manager.py, the gunicorn config, devstack, the sandbox), and every secret deployed
  is one core/adapters/secret_manager.py knows;
- every image built is pushed and deployed; ports agree across Dockerfile, compose and
  Cloud Build; the web service has no instance cap; beat runs exactly once;
- the images run as a non-root user and install only the lock, which pins every dependency;
- requirements-test.lock pins what the test extras add, and `make install` installs with both
  locks as constraints (exact versions, whatever was released since).

``make lock`` (devstack/lock.py) regenerates both lock files.
"""
from __future__ import annotations

import ast
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from core.adapters import secret_manager as core_secrets  # noqa: E402

DOCKERFILES = {"web": ROOT / "Dockerfile.web", "worker": ROOT / "Dockerfile.worker"}
CLOUDBUILDS = {"cloudbuild.yaml": "_PROD", "cloudbuild-dev.yaml": "_TEST"}
LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
BASE_IMAGE = "python:3.11-slim"
# Set by the Dockerfiles for Python and pip themselves, not read by tokenbank.
RUNTIME_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH",
               "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_CACHE_DIR"}
APP_SERVICES = {"web", "worker", "beat", "flower"}
DEV_TOOLS = {"sandbox", "devstack", "tests", "bench"}
CLOUD_BUILD_BUILTINS = {"PROJECT_ID", "COMMIT_SHA", "SHORT_SHA", "BUILD_ID", "LOCATION", "PROJECT_NUMBER",
                        "REPO_NAME", "BRANCH_NAME", "TAG_NAME", "REVISION_ID"}


# --- what the code reads -------------------------------------------------------------------------

_READ_PATTERNS = [
    r"""(?:env|environ)\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""",
    r"""_(?:int|float)\(\s*env,\s*["']([A-Z][A-Z0-9_]*)["']""",
    r"""\bsecret\(\s*["']([A-Z][A-Z0-9_]*)["']""",
    r"""_float_env\(\s*["']([A-Z][A-Z0-9_]*)["']""",
    r"""\benv\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]""",
]


def _readers() -> list[Path]:
    """The service packages (core/config.py above all), the sandbox's settings and devstack."""
    return [*(p for package in ("core", "web", "worker") for p in sorted((ROOT / package).rglob("*.py"))),
            ROOT / "sandbox" / "config.py", *sorted((ROOT / "devstack").glob("*.py"))]


def known_variables() -> set[str]:
    """Every variable the services, the sandbox and devstack read, found in their source."""
    names = set()
    for path in _readers():
        text = path.read_text()
        for pattern in _READ_PATTERNS:
            names |= set(re.findall(pattern, text))
    names |= {core_secrets.PROJECT_VAR, core_secrets.PREFIX_VAR, core_secrets.SUFFIX_VAR}
    names |= {core_secrets.override_var(name) for name in core_secrets.SECRET_NAMES}
    return names


def readme_variables() -> set[str]:
    """The variables README.md's configuration table documents (first column of its rows)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def module_path(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defines(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, (ast.FunctionDef, ast.Assign, ast.ClassDef)) and (
        getattr(node, "name", None) == name or any(getattr(t, "id", None) == name for t in getattr(node, "targets", [])))
        for node in tree.body)


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value``, ``--name value`` or ``-n value`` in argv (the last one wins, as in the CLIs)."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def unwrap_shell(argv: list[str]) -> list[str]:
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c":
        argv = shlex.split(argv[2])
        if argv and argv[0] == "exec":
            argv = argv[1:]
    return argv


def check_command(argv: list[str]) -> str:
    """Asserts that what the command runs exists; returns its kind (web, worker, beat, flower, sandbox)."""
    argv = unwrap_shell(list(argv))
    assert argv, "empty command"
    program = Path(argv[0]).name
    if program == "gunicorn":
        config = option(argv, "-c")
        assert config and (ROOT / config).is_file(), f"gunicorn config {config!r} does not exist"
        target = argv[-1]
        module, _, func = target.partition(":")
        path = module_path(module)
        assert path, f"gunicorn app module {module} does not exist"
        assert defines(path, func.removesuffix("()")), f"{module} defines no {func}"
        return "web"
    if program == "celery":
        app = option(argv, "-A")
        assert app and module_path(app), f"celery app module {app!r} does not exist"
        assert defines(module_path(app), "app"), f"{app} defines no module-level app"
        sub = [a for a in argv[1:] if a in ("worker", "beat", "flower")]
        assert sub, f"no celery sub-command in {argv}"
        return sub[0]
    if program.startswith("python") and "-m" in argv:
        module = argv[argv.index("-m") + 1]
        path = ROOT.joinpath(*module.split("."))
        assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), f"python -m {module}: no such module"
        return module
    raise AssertionError(f"unknown command {argv}")


# --- Dockerfiles ---------------------------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instrs) if word == "FROM"]
    return instrs[starts[-1]:]


def env_names(value: str) -> set[str]:
    return {part.split("=", 1)[0] for part in shlex.split(value) if "=" in part}


def exposed(instrs) -> set[int]:
    return {int(p.split("/")[0]) for word, rest in instrs if word == "EXPOSE" for p in rest.split()}


def cmd_of(instrs) -> list[str]:
    cmds = [rest for word, rest in instrs if word == "CMD"]
    assert cmds, "no CMD"
    return json.loads(cmds[-1])  # exec form only: signals reach the process


def copy_sources(instrs) -> list[str]:
    sources = []
    for word, rest in instrs:
        if word not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--chown") and not p.startswith("--chmod")]
        if any(p.startswith("--from") for p in parts):
            continue
        sources += parts[:-1]
    return sources


def dockerignore_allows(path: str) -> bool:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    path = path.rstrip("/").removeprefix("./")
    return any(path == a or path.startswith(a + "/") for a in allowed)


@pytest.fixture(scope="module")
def known():
    names = known_variables()
    # The grep found what it should: a broken pattern must not make every check pass vacuously.
    assert {"TOKENBANK_ENV", "STRIPE_SECRET_KEY", "REDIS_URL", "CELERY_BROKER_URL", "PORT", "PUBLIC_BASE_URL",
            "FIRESTORE_EMULATOR_HOST", "TASK_TIME_LIMIT", "SANDBOX_PORT", "WORKER_CONCURRENCY", "FLOWER_BASIC_AUTH",
            "WEB_CONCURRENCY", "SECRET_MANAGER_PROJECT", "STRIPE_SECRET_KEY_SECRET"} <= names
    assert "NOT_READ_ANYWHERE" not in names
    return names


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_is_small_pinned_and_runs_as_a_non_root_user(kind, known):
    instrs = instructions(DOCKERFILES[kind].read_text())
    for word, rest in instrs:
        if word == "FROM":
            assert rest.split()[0] == BASE_IMAGE, f"{kind}: base image {rest}"
    stage = final_stage(instrs)
    users = [rest for word, rest in stage if word == "USER"]
    assert users, f"{kind}: no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{kind}: runs as root"
    last_user = max(i for i, (word, _) in enumerate(stage) if word == "USER")
    assert all(word not in ("RUN", "COPY", "ADD") for word, _ in stage[last_user + 1:]), "USER comes last"
    installs = [rest for word, rest in instrs if word == "RUN" and "pip install" in rest]
    assert installs, f"{kind}: installs nothing"
    for run in installs:
        assert "--no-cache-dir" in run and "-r /tmp/requirements.lock" in run and "--no-deps" in run, run
        assert "pip check" in run, "the lock must be complete and consistent: pip check after --no-deps"
    for source in copy_sources(instrs):
        assert (ROOT / source).exists(), f"{kind}: COPY {source}: no such path"
        assert source.split("/")[0] not in DEV_TOOLS, f"{kind}: a development tool in the image: {source}"
        assert source not in (".", "./"), f"{kind}: copies the whole context"
        assert dockerignore_allows(source), f"{kind}: .dockerignore excludes {source}"
    for word, rest in instrs:
        if word == "ENV":
            unknown = env_names(rest) - known - RUNTIME_ENV
            assert not unknown, f"{kind}: sets variables nothing reads: {unknown}"
    assert check_command(cmd_of(instrs)) == kind


def test_web_image_serves_on_its_port_with_a_healthcheck():
    instrs = instructions(DOCKERFILES["web"].read_text())
    stage = final_stage(instrs)
    env = dict(part.split("=", 1) for word, rest in stage if word == "ENV" for part in shlex.split(rest))
    assert exposed(stage) == {int(env["PORT"])} == {8080}
    health = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "PORT" in health[0]
    assert '@bp.get("/healthz")' in (ROOT / "web" / "webhooks.py").read_text()
    assert "os.environ.get('PORT'" in (ROOT / "web" / "gunicorn.conf.py").read_text()  # gunicorn binds $PORT


def test_worker_image_exposes_flower_and_runs_the_worker_by_default():
    instrs = instructions(DOCKERFILES["worker"].read_text())
    assert exposed(final_stage(instrs)) == {5555}
    assert check_command(cmd_of(instrs)) == "worker"


def test_dockerignore_is_an_allow_list_without_secrets_or_tools():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()
             and not ln.startswith("#")]
    assert lines[0] == "*", "start from nothing, then allow"
    for path in (".venv", ".git", "tests", "sandbox", "bench", "artifacts", ".run", "devstack/dev.py"):
        assert not dockerignore_allows(path), path
    for path in ("core", "web", "worker", "requirements.lock"):
        assert dockerignore_allows(path), path


# --- requirements.lock ---------------------------------------------------------------------------

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{path.name}: not a name==version pin: {line!r}"
        name = canonical(match[1])
        assert name not in pins, f"{path.name}: {name} twice"
        pins[name] = match[2]
    return pins


def project_dependencies():
    from packaging.requirements import Requirement

    return [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def pyproject_test_extras():
    """pyproject's [project.optional-dependencies] test: what `make install` adds for the suite."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in project["optional-dependencies"]["test"]]


def installed_closure(requirements=None) -> dict[str, tuple[object, set[str]]]:
    """The requirements (pyproject's dependencies by default) and everything they require, as
    installed in this venv."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, tuple[object, set[str]]] = {}
    queue = list(project_dependencies() if requirements is None else requirements)
    while queue:
        req = queue.pop()
        name = canonical(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name][1]:
            continue
        extras |= seen[name][1] if name in seen else set()
        dist = metadata.distribution(req.name)
        seen[name] = (dist, extras)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                queue.append(sub)
    return seen


def test_lock_pins_every_pyproject_dependency_at_its_version():
    pins = lock_pins()
    for req in project_dependencies():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"pyproject pins {req} with =="
        assert pins.get(canonical(req.name)) == specs[0].version, (
            f"requirements.lock has {req.name}=={pins.get(canonical(req.name))}, pyproject {specs[0].version}: "
            "regenerate it (make lock)")


def test_lock_is_closed_and_consistent_with_what_the_packages_require():
    from packaging.requirements import Requirement

    pins = lock_pins()
    closure = installed_closure()
    missing = sorted(set(closure) - set(pins))
    assert not missing, f"requirements.lock lacks {missing}: regenerate it (make lock)"
    stale = sorted(set(pins) - set(closure))
    assert not stale, f"requirements.lock pins packages pyproject no longer needs: {stale}: regenerate it (make lock)"
    for name, (dist, extras) in closure.items():
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                assert sub.specifier.contains(pins[canonical(sub.name)], prereleases=True), (
                    f"{name} requires {sub}, the lock pins {sub.name}=={pins[canonical(sub.name)]}")


def test_test_lock_pins_every_test_extra_at_its_version():
    runtime, test = lock_pins(LOCK), lock_pins(TEST_LOCK)
    assert not set(runtime) & set(test), f"pinned in both lock files: {sorted(set(runtime) & set(test))}"
    pins = {**runtime, **test}
    for req in pyproject_test_extras():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"pyproject's test extras pin {req} with =="
        assert pins.get(canonical(req.name)) == specs[0].version, (
            f"the locks have {req.name}=={pins.get(canonical(req.name))}, pyproject {specs[0].version}: "
            "regenerate them (make lock)")
    assert "import-linter" in test, "import-linter (the boundaries check) is a locked test dependency"


def test_test_lock_is_closed_and_consistent_with_what_the_packages_require():
    """requirements-test.lock is exactly the closure of the test extras less requirements.lock,
    and with it satisfies every requirement of every package in that closure."""
    from packaging.requirements import Requirement

    runtime, test = lock_pins(LOCK), lock_pins(TEST_LOCK)
    pins = {**runtime, **test}
    closure = installed_closure(pyproject_test_extras())
    missing = sorted(set(closure) - set(pins))
    assert not missing, f"requirements-test.lock lacks {missing}: regenerate it (make lock)"
    stale = sorted(set(test) - set(closure))
    assert not stale, f"requirements-test.lock pins packages the test extras no longer need: {stale}: make lock"
    for name, (dist, extras) in closure.items():
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                assert sub.specifier.contains(pins[canonical(sub.name)], prereleases=True), (
                    f"{name} requires {sub}, the locks pin {sub.name}=={pins[canonical(sub.name)]}")


def test_locks_agree_with_the_lock_tool():
    """devstack/lock.py (make lock) writes the same files the checks above read: names, headers, closure."""
    from devstack import lock

    assert (ROOT / lock.RUNTIME_LOCK, ROOT / lock.TEST_LOCK) == (LOCK, TEST_LOCK)
    for path, header in ((LOCK, lock.RUNTIME_HEADER), (TEST_LOCK, lock.TEST_HEADER)):
        assert path.read_text().startswith(header), f"{path.name}: header differs from devstack/lock.py's"
        pins = [tuple(line.split("==")) for line in path.read_text().splitlines() if line and not line.startswith("#")]
        assert path.read_text() == lock.render(header, pins), f"{path.name}: not as make lock writes it (sorted)"
    assert lock.bootstrap() == makefile_variables()["BOOTSTRAP"].split()


# --- Makefile: make install (test, dev, bench) installs exactly the locked versions ----------------

def makefile_variables() -> dict[str, str]:
    variables = {}
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*[:?]?=\s*(.*)", line)
        if match:
            variables[match[1]] = match[2].strip()
    return variables


def expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(10):
        text = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: variables.get(m[1], m[0]), text)
    return text


def makefile_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), variables expanded."""
    variables = makefile_variables()
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current:
            rules[current][1].append(expand(line.strip(), variables))
            continue
        current = None
        match = re.fullmatch(r"([^\s:=#][^:=]*):(?!=)(.*)", line)
        if match and not line.startswith("."):
            prereqs = expand(match[2], variables).replace("|", " ").split()
            for target in expand(match[1], variables).split():
                rules[target] = (prereqs, [])
                current = target
    return rules


def depends_on(rules, target: str, wanted: str) -> bool:
    seen, queue = set(), [target]
    while queue:
        name = queue.pop()
        if name == wanted:
            return True
        if name not in seen:
            seen.add(name)
            queue += rules.get(name, ([], []))[0]
    return False


def pip_installs(recipe: list[str]) -> list[list[str]]:
    out = []
    for line in recipe:
        if not re.search(r"\bpip\b.*\binstall\b", line):
            continue
        argv = shlex.split(line)
        if "pip" in argv and "install" in argv[argv.index("pip"):]:
            out.append(argv[argv.index("install", argv.index("pip")) + 1:])
    return out


def test_makefile_installs_exactly_the_locked_versions():
    rules = makefile_rules()
    stamp = makefile_variables()["STAMP"].replace("$(VENV)", makefile_variables()["VENV"])
    for target in ("test", "dev", "bench", "unit", "integration", "e2e"):
        assert depends_on(rules, target, stamp), f"make {target} does not install the locked packages first"
    prereqs, recipe = rules[stamp]
    assert {"pyproject.toml", "requirements.lock", "requirements-test.lock"} <= set(prereqs), (
        f"{stamp} must be rebuilt when pyproject.toml or a lock changes: {prereqs}")
    installs = pip_installs(recipe)
    assert installs, f"{stamp}: installs nothing"
    project = [args for args in installs if "-e" in args or "." in args or any(a.startswith(".[") for a in args)]
    assert len(project) == 1, f"{stamp}: the project is installed once: {installs}"
    args = project[0]
    constraints = [args[i + 1] for i, a in enumerate(args) if a in ("-c", "--constraint")]
    assert constraints == ["requirements.lock", "requirements-test.lock"], f"installs with constraints {constraints}"
    assert "--no-build-isolation" in args and args[args.index("-e") + 1] == ".[test]", args
    assert installs.index(args) > 0, "pip, setuptools and wheel are installed (pinned) before the project"
    # Every other install pins what it installs: pip, setuptools and wheel themselves.
    for other in installs:
        if other is args:
            continue
        names = [a for a in other if not a.startswith("-")]
        assert names and all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", a) for a in names), other
        assert "--upgrade" not in other and "-U" not in other, other
    bootstrap = {canonical(a.split("==")[0]) for other in installs if other is not args for a in other if "==" in a}
    assert {"pip", "setuptools", "wheel"} <= bootstrap, bootstrap
    for target, (_, lines) in rules.items():
        if target != stamp:
            assert not pip_installs(lines), f"make {target} installs Python packages outside the locked step"
    assert any("devstack/lock.py" in line or "devstack.lock" in line for line in rules["lock"][1]), "make lock"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfiles_install_the_runtime_lock_only(kind):
    instrs = instructions(DOCKERFILES[kind].read_text())
    copies = [rest for word, rest in instrs if word == "COPY" and "requirements" in rest]
    assert copies and all(shlex.split(rest)[0] == "requirements.lock" for rest in copies), copies
    installs = [rest for word, rest in instrs if word == "RUN" and "pip install" in rest]
    assert installs and all("--no-deps -r /tmp/requirements.lock" in run and "pip check" in run for run in installs)
    assert "requirements-test.lock" not in DOCKERFILES[kind].read_text(), "test packages in an image"


# --- docker-compose.yml --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service_command(service: dict) -> list[str]:
    if "command" in service:
        command = service["command"]
        return shlex.split(command) if isinstance(command, str) else list(command)
    build = service.get("build") or {}
    dockerfile = ROOT / (build.get("dockerfile") if isinstance(build, dict) else "Dockerfile")
    return cmd_of(instructions(dockerfile.read_text()))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service: dict) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for mapping in service.get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        out[int(container.split("/")[0])] = int(host.rpartition(":")[2] or container)
    return out


def test_compose_restarts_every_app_process_that_dies(compose):
    """A worker main process can die on a Redis restart (issue 10): it must come back by itself."""
    for name in APP_SERVICES:
        assert compose["services"][name].get("restart") in ("unless-stopped", "always"), name


def test_compose_publishes_flower_on_the_loopback_only(compose):
    """Flower's API can publish tasks: only an operator on the machine may reach it (issue 9 §2.1)."""
    mappings = [str(m) for m in compose["services"]["flower"].get("ports", [])]
    assert mappings and all(m.startswith("127.0.0.1:") for m in mappings), mappings


def test_compose_runs_the_whole_system(compose):
    assert {"redis", "firestore", "auth", "stripe-sandbox", *APP_SERVICES} <= set(compose["services"])
    for name, service in compose["services"].items():
        for dep in service.get("depends_on") or {}:
            assert dep in compose["services"], f"{name} depends on unknown {dep}"
        build = service.get("build")
        if isinstance(build, dict):
            assert (ROOT / build.get("context", ".")).is_dir()
            if "dockerfile" in build:
                assert (ROOT / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']}"
            if "dockerfile_inline" in build:
                for source in copy_sources(instructions(build["dockerfile_inline"])):
                    assert (ROOT / source).is_file(), f"{name}: COPY {source}: no such file"
                    assert dockerignore_allows(source), f"{name}: .dockerignore excludes {source}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: mounts missing {source}"


def test_compose_commands_name_existing_modules(compose):
    kinds = {name: check_command(service_command(compose["services"][name]))
             for name in (*APP_SERVICES, "stripe-sandbox")}
    assert kinds == {"web": "web", "worker": "worker", "beat": "beat", "flower": "flower", "stripe-sandbox": "sandbox"}


def test_compose_sets_only_variables_the_code_reads_and_readme_documents(compose, known):
    documented = readme_variables()
    for name in (*APP_SERVICES, "stripe-sandbox"):
        env = environment(compose["services"][name])
        assert not set(env) - known, f"{name} sets variables nothing reads: {set(env) - known}"
        assert not set(env) - documented - {"SANDBOX_PUBLIC_URL"}, (
            f"{name} sets variables README's configuration table lacks: {set(env) - documented}")
    for name in APP_SERVICES:
        env = environment(compose["services"][name])
        assert env["TOKENBANK_ENV"] == "development"
        assert env["STRIPE_WEBHOOK_SECRET"] == environment(compose["services"]["stripe-sandbox"])["STRIPE_WEBHOOK_SECRET"]


def test_compose_addresses_and_ports_agree(compose):
    services = compose["services"]
    web_env = environment(services["web"])
    web_port = int(web_env["PORT"])
    assert web_port in container_ports(services["web"])
    assert {web_port} == exposed(final_stage(instructions(DOCKERFILES["web"].read_text())))

    flower = unwrap_shell(service_command(services["flower"]))
    flower_port = int(option(flower, "--port"))
    assert flower_port in container_ports(services["flower"])
    assert {flower_port} == exposed(final_stage(instructions(DOCKERFILES["worker"].read_text())))

    sandbox = service_command(services["stripe-sandbox"])
    sandbox_port = int(option(sandbox, "--port"))
    assert option(sandbox, "--host") == "0.0.0.0" and sandbox_port in container_ports(services["stripe-sandbox"])
    hook = urlparse(option(sandbox, "--webhook-url"))
    assert (hook.hostname, hook.port) == ("web", web_port)
    assert f'@bp.post("{hook.path}")' in (ROOT / "web" / "webhooks.py").read_text()
    assert urlparse(option(sandbox, "--public-url")).port == container_ports(services["stripe-sandbox"])[sandbox_port]

    firestore = services["firestore"]["command"]
    fs_port = int(option(firestore, "--host-port").rsplit(":", 1)[1])
    auth_file = re.search(r'"auth": \{"host": "0\.0\.0\.0", "port": (\d+)\}', services["auth"]["build"]["dockerfile_inline"])
    auth_port = int(auth_file[1])
    for name in APP_SERVICES:
        env = environment(services[name])
        stripe = urlparse(env["STRIPE_API_BASE"])
        assert (stripe.hostname, stripe.port) == ("stripe-sandbox", sandbox_port)
        assert env["FIRESTORE_EMULATOR_HOST"] == f"firestore:{fs_port}"
        redis = urlparse(env["REDIS_URL"])
        assert redis.hostname == "redis" and redis.hostname in services
        # The browser signs in at this address: the Auth emulator's port published on the host.
        assert env["FIREBASE_AUTH_EMULATOR_HOST"] == f"localhost:{container_ports(services['auth'])[auth_port]}"
        public = urlparse(env["PUBLIC_BASE_URL"])
        assert public.port == container_ports(services["web"])[web_port]


# --- cloudbuild.yaml, cloudbuild-dev.yaml --------------------------------------------------------

def load_build(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def flags(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            assert key not in out, f"{key} given twice"
            out[key] = value
    return out


def pairs(value: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in value.split(","))


def builds(doc) -> dict[str, Path]:
    """image -> Dockerfile, from the docker build steps."""
    out = {}
    for step in doc["steps"]:
        if step["name"].endswith("/docker") and step["args"][0] == "build":
            out[option(step["args"], "-t")] = ROOT / option(step["args"], "-f")
    return out


def deploys(doc) -> list[dict]:
    out = []
    for step in doc["steps"]:
        if step.get("entrypoint") != "gcloud":
            continue
        args = [a for a in step["args"] if a not in ("beta", "alpha")]
        assert args[:2] == ["run", "deploy"] or args[:3] == ["run", "worker-pools", "deploy"], args
        kind = "service" if args[1] == "deploy" else "worker-pool"
        name = args[2] if kind == "service" else args[3]
        out.append({"id": step["id"], "kind": kind, "name": name, "args": step["args"], "flags": flags(step["args"])})
    return out


def deploy_command(deploy: dict, images: dict[str, Path]) -> list[str]:
    if "--command" in deploy["flags"]:
        return [deploy["flags"]["--command"], *deploy["flags"].get("--args", "").split(",")]
    return cmd_of(instructions(images[deploy["flags"]["--image"]].read_text()))


@pytest.mark.parametrize("name", sorted(CLOUDBUILDS))
def test_cloudbuild_substitutions_are_all_defined_and_used(name):
    doc = load_build(name)
    text = "\n".join(strings(doc["steps"])) + "\n" + "\n".join(strings(doc.get("images", [])))
    used = set(re.findall(r"\$\{(_[A-Z0-9_]+)\}", text)) | set(re.findall(r"\$(_[A-Z0-9_]+)", text))
    assert used == set(doc["substitutions"]), f"used {sorted(used)}, defined {sorted(doc['substitutions'])}"
    builtins = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    assert builtins <= CLOUD_BUILD_BUILTINS, builtins - CLOUD_BUILD_BUILTINS


@pytest.mark.parametrize("name", sorted(CLOUDBUILDS))
def test_cloudbuild_builds_pushes_and_deploys_every_image(name):
    doc = load_build(name)
    images = builds(doc)
    assert {path.name for path in images.values()} == {"Dockerfile.web", "Dockerfile.worker"}
    for image, dockerfile in images.items():
        assert dockerfile.is_file()
        assert re.fullmatch(r"\$\{_REGION\}-docker\.pkg\.dev/\$PROJECT_ID/\$\{_REPOSITORY\}/tokenbank-[a-z]+:\$COMMIT_SHA",
                            image), f"not an Artifact Registry path tagged with the commit: {image}"
    pushed = {step["args"][1] for step in doc["steps"] if step["name"].endswith("/docker") and step["args"][0] == "push"}
    assert pushed == set(images)
    assert set(doc["images"]) == set(images)
    deployed = {d["flags"]["--image"] for d in deploys(doc)}
    assert deployed == set(images), f"built but not deployed: {set(images) - deployed}"
    ids = {step["id"] for step in doc["steps"]}
    for step in doc["steps"]:
        assert set(step.get("waitFor", [])) <= ids, step["id"]


@pytest.mark.parametrize("name", sorted(CLOUDBUILDS))
def test_cloudbuild_deploys_set_known_variables_and_known_secrets(name, known):
    suffix = CLOUDBUILDS[name]
    for deploy in deploys(load_build(name)):
        env = pairs(deploy["flags"]["--set-env-vars"])
        assert not set(env) - known, f"{deploy['id']} sets variables nothing reads: {set(env) - known}"
        assert env["TOKENBANK_ENV"] == "production"
        assert env["GOOGLE_CLOUD_PROJECT"] == "$PROJECT_ID"
        assert env["REDIS_URL"] == "${_REDIS_URL}" and env["PUBLIC_BASE_URL"] == "${_PUBLIC_BASE_URL}"
        deployed = pairs(deploy["flags"]["--set-secrets"])
        # Production configuration requires every one of them (core/config.py).
        assert set(deployed) == set(core_secrets.SECRET_NAMES), deploy["id"]
        for variable, ref in deployed.items():
            secret_id, _, version = ref.partition(":")
            assert version == "latest"
            # The names core/adapters/secret_manager.py reads itself with SECRET_NAME_SUFFIX=<suffix>.
            assert secret_id == variable + suffix, f"{deploy['id']}: {variable} from {secret_id}"
            assert not set(env) & set(deployed), "a secret also set as a plain variable"


@pytest.mark.parametrize("name", sorted(CLOUDBUILDS))
def test_cloudbuild_commands_ports_and_instance_counts(name):
    doc = load_build(name)
    images = builds(doc)
    by_kind = {}
    for deploy in deploys(doc):
        kind = check_command(deploy_command(deploy, images))
        assert kind not in by_kind, f"{kind} deployed twice"
        by_kind[kind] = deploy
    assert set(by_kind) == {"web", "worker", "beat", "flower"}

    web = by_kind["web"]
    assert web["kind"] == "service" and web["flags"]["--image"].endswith(f"tokenbank-web:$COMMIT_SHA")
    web_port = int(web["flags"]["--port"])
    assert {web_port} == exposed(final_stage(instructions(DOCKERFILES["web"].read_text())))
    # The web tier keeps no session state: no instance cap, and never the origin's --max-instances=1.
    assert "--max-instances=1" not in web["args"]
    assert int(web["flags"].get("--max-instances", "100")) > 1
    assert "--allow-unauthenticated" in web["flags"]
    for probe in ("--startup-probe", "--liveness-probe"):
        settings = pairs(web["flags"][probe])
        assert settings["httpGet.path"] == "/healthz" and int(settings["httpGet.port"]) == web_port

    worker, beat = by_kind["worker"], by_kind["beat"]
    for deploy in (worker, beat):
        # Long-running: a worker pool, or a service whose CPU is never throttled and never scales to zero.
        assert deploy["kind"] == "worker-pool" or (
            "--no-cpu-throttling" in deploy["flags"] and int(deploy["flags"]["--min-instances"]) >= 1)
        assert deploy["flags"]["--image"].endswith("tokenbank-worker:$COMMIT_SHA")
    # Beat must be exactly one instance.
    assert beat["flags"].get("--scaling") == "1" or (
        beat["flags"].get("--max-instances") == "1" and beat["flags"].get("--min-instances") == "1")

    flower = by_kind["flower"]
    flower_port = int(option(deploy_command(flower, images), "--port"))
    assert int(flower["flags"]["--port"]) == flower_port
    assert {flower_port} == exposed(final_stage(instructions(DOCKERFILES["worker"].read_text())))
    assert "--no-allow-unauthenticated" in flower["flags"], "Flower is an operator's tool, never public"


def test_dev_build_has_its_own_services_and_test_secrets():
    prod, dev = load_build("cloudbuild.yaml"), load_build("cloudbuild-dev.yaml")
    prod_names = {d["name"] for d in deploys(prod)}
    dev_names = {d["name"] for d in deploys(dev)}
    assert not prod_names & dev_names
    prod_secrets = {v for d in deploys(prod) for v in pairs(d["flags"]["--set-secrets"]).values()}
    dev_secrets = {v for d in deploys(dev) for v in pairs(d["flags"]["--set-secrets"]).values()}
    assert not prod_secrets & dev_secrets
    assert prod["substitutions"]["_REPOSITORY"] != dev["substitutions"]["_REPOSITORY"]

