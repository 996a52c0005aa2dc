# Diandian: `make run` serves a demo on this machine, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test soak bench lint install migrate seed clean browser nginx

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

test: $(STAMP) browser nginx
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Debian packages some tests need: quick when present; installed with apt-get as root; otherwise
# those tests skip and say why. $(call apt_install,who needs them,packages)
apt_install = echo "$(1): installing $(2) (apt-get)"; export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -qq --no-install-recommends $(2) >/dev/null 2>&1 || \
	{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $(2) >/dev/null 2>&1; } || \
	echo "$(1) will be skipped: apt-get could not install $(2)"
can_apt = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null

# The browser tests' Chromium and CJK font (Playwright itself is a test extra).
CHROMIUM  ?= /usr/bin/chromium
CJK_FONT  := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
BROWSER_PACKAGES := chromium fonts-wqy-microhei
browser:
	@if [ -x $(CHROMIUM) ] && [ -f $(CJK_FONT) ]; then :; \
	elif $(can_apt); then $(call apt_install,browser tests,$(BROWSER_PACKAGES)); \
	else echo "browser tests will be skipped: no $(CHROMIUM) and no root apt-get to install $(BROWSER_PACKAGES)"; fi

# nginx for tests/deploy/test_nginx_live.py (deploy/nginx/diandian.conf served for real)
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif $(can_apt); then $(call apt_install,nginx tests,nginx-light); \
	else echo "nginx tests will be skipped: no nginx and no root apt-get to install nginx-light"; fi

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

# ruff, then pip-audit (deploy/audit_dependencies.py: fails on a known vulnerability; where the advisory
# service cannot be reached, audits against the dated snapshot deploy/advisories.json and says so)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) deploy/audit_dependencies.py

clean:
	rm -rf $(VENV) var
