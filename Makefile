# Pay Box: `make run` serves the demo, `make test` runs the whole suite. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
# The languages of the Flask-Babel catalogues (see `make translations`).
LANGUAGES := it de en
PO_FILES := $(foreach lang,$(LANGUAGES),translations/$(lang)/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)
PYBABEL := $(BIN)/pybabel

.PHONY: run test install install-dev assets demo lint bench clean translations

SANDBOX_PORT ?= 5001
# What the app needs to know of them: its own URL (printed with the logins) and the sandbox's (where it publishes).
DEMO_ENV := PAYBOX_HOST=$(HOST) PAYBOX_PORT=$(PORT) PAYBOX_SANDBOX_PORT=$(SANDBOX_PORT)

# Pay Box on :5000 and, beside it, the pagoPA sandbox on :5001 (both stop together on Ctrl-C).
run: install assets
	@mkdir -p instance
	$(FLASK) db upgrade
	$(DEMO_ENV) $(FLASK) demo load --if-empty
	@echo "pagoPA sandbox: http://$(HOST):$(SANDBOX_PORT)  ·  Pay Box: http://$(HOST):$(PORT)/officer/"
	trap 'kill 0' EXIT INT TERM; \
	SANDBOX_PAYBOX_SOAP_URL=http://$(HOST):$(PORT)/pagopa/paForNode SANDBOX_PUBLIC_URL=http://$(HOST):$(SANDBOX_PORT) \
	SANDBOX_ACCEPT_PAST_DUE_DATES=1 \
	    $(BIN)/flask --app portal.pagopa.sandbox run --host $(HOST) --port $(SANDBOX_PORT) & \
	$(DEMO_ENV) $(FLASK) run --host $(HOST) --port $(PORT)

# First the prerequisites (PostgreSQL, Redis: stop at once; poppler-utils, chromium: the apt command, then skips).
test: install-dev assets
	$(BIN)/python -m tests.prerequisites
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: Python 3.11+ is needed"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "make: install venv: sudo apt-get install -y python3-venv"; exit 1; }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Front-end packages come from npm, pinned by package-lock.json, and are copied under static/vendor (not committed);
# then every static file gets a fingerprinted, gzipped copy and static/cache_manifest.json (flask digest compile).
assets: static/.digested $(MO_FILES)
static/.digested: $(VENV)/.installed static/vendor/.installed $(filter-out static/.digested,$(wildcard static/css/*.css static/js/*.js static/*.svg))
	$(FLASK) digest clean >/dev/null
	$(FLASK) digest compile >/dev/null
	touch $@

static/vendor/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm is needed for the front-end packages: sudo apt-get install -y npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf static/vendor/bootstrap-italia static/vendor/htmx static/vendor/swagger-ui
	mkdir -p static/vendor/bootstrap-italia static/vendor/htmx static/vendor/swagger-ui
	cp -r node_modules/bootstrap-italia/dist/{css,js,fonts,svg} static/vendor/bootstrap-italia/
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx/
	cp node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css} static/vendor/swagger-ui/
	touch $@

# Flask-Babel catalogues: extract every gettext text (Python and templates, babel.cfg) into translations/messages.pot,
# update (or start) the catalogue of each language, complete the Italian one (the source language), compile all.
# Untranslated texts of de/en fall back to Italian. `make assets` compiles the committed catalogues (.mo not kept).

translations: install
	$(PYBABEL) extract -F babel.cfg -k lazy_gettext -k _l -k N_ --sort-by-file --width 120 --project "Pay Box" \
	    --copyright-holder "Pay Box" --msgid-bugs-address "" -o translations/messages.pot .
	for lang in $(LANGUAGES); do \
	    if [ -f translations/$$lang/LC_MESSAGES/messages.po ]; then \
	        $(PYBABEL) update -i translations/messages.pot -d translations -l $$lang --width 120 --ignore-obsolete; \
	    else $(PYBABEL) init -i translations/messages.pot -d translations -l $$lang --width 120; fi; \
	done
	$(BIN)/python -m portal.i18n prepare translations
	$(PYBABEL) compile -d translations --statistics

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po $(VENV)/.installed
	$(PYBABEL) compile -i $< -o $@ -l $*

demo: install
	$(FLASK) db upgrade
	$(DEMO_ENV) $(FLASK) demo load --if-empty

lint: install-dev
	$(BIN)/ruff check portal tests bench

clean:
	rm -rf $(VENV) node_modules static/vendor static/cache_manifest.json static/.digested
	find static -name '*-????????????????????????????????.*' -delete -o -name '*.gz' -delete
