# Diandian: `make run` serves a demo on this machine, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test soak bench lint install migrate seed clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(PY) -m flask --app app:create_app db upgrade

seed: migrate
	$(PY) -m flask --app app:create_app seed-demo

run: seed
	$(PY) deploy/run_local.py

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# schemathesis with many random examples per operation (make test runs a few, the same each time)
SOAK_EXAMPLES ?= 300
soak: $(STAMP)
	DIANDIAN_FUZZ_EXAMPLES=$(SOAK_EXAMPLES) DIANDIAN_FUZZ_RANDOM=1 DIANDIAN_FUZZ_REPORT=1 \
		$(PY) -m pytest -q -s tests/api/test_schemathesis.py $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ruff, then pip-audit (deploy/audit_dependencies.py: fails on a known vulnerability; says so loudly and
# passes when the advisory service cannot be reached, unless AUDIT_STRICT=1)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) deploy/audit_dependencies.py

clean:
	rm -rf $(VENV) var
