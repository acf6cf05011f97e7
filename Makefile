# comcenter — the two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test install install-dev migrate demo serve lint format bench bench-max clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# A local .env with a fresh SECRET_KEY, written once; secrets never live in the repository.
.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
	@echo "AUDIT_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(40))')" >> .env
	@echo "DEMO_CLIENT_ID=demo" >> .env
	@echo "DEMO_CLIENT_SECRET=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" >> .env
	@echo "# Local HTTP on 127.0.0.1: cookies without the Secure flag so the admin login works" >> .env
	@echo "SESSION_COOKIE_SECURE=false" >> .env
	@echo "CSRF_COOKIE_SECURE=false" >> .env
	@echo "# No proxy in front locally: /metrics is open to loopback without METRICS_TOKEN" >> .env
	@echo "TRUST_PROXY_HEADERS=false" >> .env
	@echo "wrote .env with a fresh SECRET_KEY and demo credentials (dry-run defaults; see .env.example)"

# A .env written before the audit chain was signed gets its AUDIT_KEY added once.
migrate: install .env
	@grep -q '^AUDIT_KEY=' .env || echo "AUDIT_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(40))')" >> .env
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

# Web (granian by default, WEB_SERVER=gunicorn for the alternative) and the django-q2 cluster together; Ctrl-C or SIGTERM stops both.
run: demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	PORT=$(PORT) $(PY) -m comcenter.run

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The replay benchmark (bench/replay.py): starts a PostgreSQL cluster and a Redis server of its
# own (PostgreSQL's server binaries and redis-server must be installed), measures the floor and
# comcenter. BENCH_EVENTS / BENCH_RATE change the replay, BENCH_MODE=soak runs 30 minutes;
# `make bench-max` finds the highest rate holding P95 <= 120 ms.
bench: install
	$(PY) -m bench.replay

bench-max: install
	BENCH_MODE=max $(PY) -m bench.replay

clean:
	rm -rf $(VENV) staticfiles comcenter.sqlite3*
