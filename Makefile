# The two commands of the README: `make run` and `make test`. Everything they
# need is installed here, from scratch on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STRIPE_PORT ?= 8420

.PHONY: run serve test setup postgres env database lint chromium

## run: set everything up, start the local Stripe, a background worker and the site on http://127.0.0.1:$(PORT)/
run: setup env database
	@$(MAKE) --no-print-directory serve

# The ports given are the ports used: the local Stripe's address goes to every
# process from here, whatever an older .env says (the environment wins over .env).
LOCAL_STRIPE := STRIPE_API_BASE=http://127.0.0.1:$(STRIPE_PORT) STRIPE_JS_URL=http://127.0.0.1:$(STRIPE_PORT)/js.stripe.com/v3/

## serve: start the local Stripe, a worker and the site (what `run` ends with, once set up)
# The local Stripe and the worker run in the background; a non-interactive shell keeps Ctrl-C
# from them, so the trap stops them (SIGTERM: the worker finishes its jobs) when the site stops.
serve:
	@$(PY) manage.py create_demo_users --site-url http://127.0.0.1:$(PORT)
	@echo "Local Stripe on http://127.0.0.1:$(STRIPE_PORT); a worker; site on http://127.0.0.1:$(PORT)/ (Ctrl-C stops all three)"
	@$(LOCAL_STRIPE) $(PY) manage.py localstripe --port $(STRIPE_PORT) --site-url http://127.0.0.1:$(PORT) & stripe_pid=$$!; \
	  $(LOCAL_STRIPE) $(PY) manage.py procrastinate worker & worker_pid=$$!; \
	  trap 'kill $$stripe_pid $$worker_pid 2>/dev/null; wait $$stripe_pid $$worker_pid 2>/dev/null' EXIT INT TERM; \
	  $(LOCAL_STRIPE) $(PY) manage.py runserver 127.0.0.1:$(PORT)

## test: the whole test suite against PostgreSQL and a local Stripe (what CI runs)
test: setup postgres chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## postgres: start the local PostgreSQL when it is down
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "PostgreSQL is down; starting it"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

## env: a development .env (kept if it exists): DEBUG on, the local Stripe, fresh secrets
env:
	@if test -f .env; then \
	  echo "Kept the existing .env (the local Stripe's address comes from STRIPE_PORT=$(STRIPE_PORT), not from it)"; \
	else \
	  { \
	  echo "DEBUG=true"; \
	  echo "DATABASE_URL=postgres://postgres@127.0.0.1:5432/paymentsite"; \
	  echo "DJANGO_SECRET_KEY=dev-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"; \
	  echo "STRIPE_SECRET_KEY=sk_test_localstripe"; \
	  echo "STRIPE_PUBLISHABLE_KEY=pk_test_localstripe"; \
	  echo "STRIPE_WEBHOOK_SECRET=whsec_$$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"; \
	  echo "STRIPE_API_BASE=http://127.0.0.1:$(STRIPE_PORT)"; \
	  echo "STRIPE_JS_URL=http://127.0.0.1:$(STRIPE_PORT)/js.stripe.com/v3/"; \
	  } > .env && echo "Wrote .env for development"; \
	fi

database: postgres env
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='paymentsite'" | grep -q 1 \
	  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE paymentsite"
	$(PY) manage.py migrate --no-input

## chromium: the browser for the end-to-end tests (Debian's package)
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Chromium for the browser tests"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  echo "Could not install chromium: browser tests will be skipped"; }

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
