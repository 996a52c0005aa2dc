# Diandian: `make run` serves a demo on this machine, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test soak bench lint install migrate seed clean browser

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

test: $(STAMP) browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The browser tests' Chromium and CJK font (Debian packages; Playwright itself is a test extra).
# Quick when present; installed with apt-get as root; otherwise tests/browser skip and say why.
CHROMIUM  ?= /usr/bin/chromium
CJK_FONT  := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
BROWSER_PACKAGES := chromium fonts-wqy-microhei
browser:
	@if [ -x $(CHROMIUM) ] && [ -f $(CJK_FONT) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "browser tests: installing $(BROWSER_PACKAGES) (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null 2>&1; } || \
		echo "browser tests will be skipped: apt-get could not install $(BROWSER_PACKAGES)"; \
	else echo "browser tests will be skipped: no $(CHROMIUM) and no root apt-get to install $(BROWSER_PACKAGES)"; fi

# schemathesis with many random examples per operation (make test runs a few, the same each time)
SOAK_EXAMPLES ?= 300
# and the scale-out and fault suite with more guests and fault rounds (DIANDIAN_SOAK=1; it needs
# TEST_DATABASE_URL and TEST_REDIS_URL, else it skips and says why)
soak: $(STAMP)
	DIANDIAN_FUZZ_EXAMPLES=$(SOAK_EXAMPLES) DIANDIAN_FUZZ_RANDOM=1 DIANDIAN_FUZZ_REPORT=1 \
		$(PY) -m pytest -q -s tests/api/test_schemathesis.py $(PYTEST_ARGS)
	DIANDIAN_SOAK=1 $(PY) -m pytest -q -s tests/reliability/test_scale_out.py $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ruff, then pip-audit (deploy/audit_dependencies.py: fails on a known vulnerability; says so loudly and
# passes when the advisory service cannot be reached, unless AUDIT_STRICT=1)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) deploy/audit_dependencies.py

clean:
	rm -rf $(VENV) var
