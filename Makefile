# tokenbank: `make dev` runs the whole system locally, `make test` runs the whole suite.
# Both install what is missing first (a .venv, Python packages, Redis, Chromium, the Stripe CLI,
# the Firebase Auth emulator).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip, setuptools and wheel themselves, pinned (the project installs with --no-build-isolation, so its
# build backend is this setuptools). devstack/lock.py reads this line too.
BOOTSTRAP := pip==25.3 setuptools==80.9.0 wheel==0.45.1
STRIPE_CLI := sandbox/node_modules/.bin/stripe
FIREBASE_CLI := devstack/firebase/node_modules/.bin/firebase
FIRESTORE_JAR := /usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar

.PHONY: install system-deps test unit integration e2e dev bench chaos lock clean

install: system-deps $(STAMP) $(STRIPE_CLI) $(FIREBASE_CLI)

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "tokenbank needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions: requirements.lock (what the images install) and requirements-test.lock
# (what the test extras add) constrain every package, so an upstream release changes nothing here
# until `make lock` takes it.
$(STAMP): pyproject.toml requirements.lock requirements-test.lock | $(PY)
	$(PY) -m pip install -q $(BOOTSTRAP)
	$(PY) -m pip install -q --no-build-isolation -c requirements.lock -c requirements-test.lock -e '.[test]'
	$(PY) -m pip check
	touch $@

# Re-resolves pyproject.toml's dependencies afresh in a temporary venv and rewrites both lock files.
lock:
	$(PYTHON) devstack/lock.py

system-deps:
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v java >/dev/null && test -f $(FIRESTORE_JAR) || { \
	  echo "The Cloud Firestore emulator is missing: install the Debian package" \
	       "google-cloud-cli-firestore-emulator (Google Cloud apt repository) and a Java runtime."; exit 2; }

$(STRIPE_CLI): sandbox/package.json sandbox/package-lock.json
	cd sandbox && npm install --no-audit --no-fund --loglevel=error
	touch $@

$(FIREBASE_CLI): devstack/firebase/package.json devstack/firebase/package-lock.json
	cd devstack/firebase && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install
	$(PY) -m devstack.run_tests tests

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m devstack.run_tests tests/integration

e2e: install
	$(PY) -m devstack.run_tests tests/e2e

dev: install
	$(PY) -m devstack.dev

bench: install
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(PY) -m bench.run

# The whole system under faults (docs/RELIABILITY.md): nothing lost, nothing doubled.
chaos: install
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) sandbox/node_modules devstack/firebase/node_modules artifacts .run .pytest_cache .hypothesis
