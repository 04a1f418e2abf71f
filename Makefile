# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test lint format migrate demo bench clean docs dist

# The entry points have no default settings module (a production process must never fall
# back to these public, DEBUG settings): the targets that run the project name the
# development one. Not `make test`: pytest takes config.settings.test from pyproject.toml,
# and an exported variable would override it.
migrate demo run: export DJANGO_SETTINGS_MODULE ?= config.settings.local

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per requirements set: `make run` installs only what running needs
# (requirements/run.txt); `make test`/`make lint` add the test toolchain, `make docs` MkDocs.
$(VENV)/.installed-run: $(BIN)/python requirements/base.txt requirements/run.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/run.txt
	touch $@

$(VENV)/.installed: $(BIN)/python requirements/base.txt requirements/run.txt requirements/test.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/test.txt
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-docs: $(BIN)/python requirements/base.txt requirements/docs.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/docs.txt
	touch $@

## Apply migrations and create the cache table (the throttle and download slots of `make
## run` count there, shared by every gunicorn worker; Redis instead when REDIS_URL is set).
migrate: $(VENV)/.installed-run
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable

demo: migrate
	$(BIN)/python -m config.demo

## Serve the API on 127.0.0.1:$(PORT) with gunicorn (threads) and run the expiry sweep,
## on SQLite and local files, with no external service.
run: demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	exec $(BIN)/honcho --procfile Procfile start --port $(PORT)

## Install what the tests need and run the whole suite.
test: $(VENV)/.installed
	$(BIN)/pytest -n 2 --dist loadfile

## The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict

## Build the sdist and wheel into dist/ and check what an index would show and ship.
## The wheel holds exactly two top-level packages; W004 is ignored because Django's
## migration modules (0001_initial.py) are never imported by name (docs/packaging.md).
dist: $(VENV)/.installed
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/check-wheel-contents --toplevel rotate,generations --ignore W004 dist/*.whl

## Measure the download against nginx on the same bytes (needs nginx and curl); see bench/.
bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements/bench.txt
	$(BIN)/python bench/run.py

## ruff, then mypy with the Django and DRF plugins on the packages and config/ (pyproject.toml).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 celery-broker.sqlite3 media staticfiles site dist build

## The reliability campaign (reliability/): gunicorn, nginx, PostgreSQL and a private Redis
## on loopback; writes reliability/results.md. `python -m reliability --budget ci` is the
## small version CI runs.
.PHONY: reliability
reliability: $(VENV)/.installed
	$(BIN)/python -m reliability
