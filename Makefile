# AnimeAPI. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Tests always run against real PostgreSQL and Redis (DB 15, so a developer's data on DB 0 is safe).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/animeapi
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PRODCHECK_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/animeapi_ops_prodcheck
PRODCHECK_REDIS_URL ?= redis://127.0.0.1:6379/9
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/animeapi_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/10

.PHONY: help install install-test run worker migrate test prod-check bench gpu-wheelhouse services chromium clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

# The tests also run the GPU backend (on a tiny model, on the CPU) and the image classifier.
# torch first, at its pin: PyPI's build carries CUDA (GBs); for the CPU build, run
# make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_PIP_ARGS ?=
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt torch $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,gpu,safety]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the project (what `make run` needs)

install-test: $(VENV)/.installed-test  ## install the test tools and the [gpu] and [safety] extras too

migrate: install  ## apply database migrations
	$(PY) manage.py migrate --noinput

run: migrate  ## serve on 127.0.0.1:$(PORT) (embedded defaults; with REDIS_URL set, a Celery worker runs beside it)
	@if [ -n "$$REDIS_URL" ]; then \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	  $(VENV)/bin/celery -A config worker -Q generate,celery -P threads -c 4 -l info & worker=$$!; \
	  $(PY) manage.py runserver 127.0.0.1:$(PORT); \
	else \
	  $(PY) manage.py runserver 127.0.0.1:$(PORT); \
	fi

worker: install  ## a Celery worker for the generate queue (needs REDIS_URL)
	$(VENV)/bin/celery -A config worker -Q generate,celery -l info

services:  ## start PostgreSQL and Redis if they are down (CI machines)
	bash .ci/services

chromium:  ## install Debian's Chromium for the browser tests (never `playwright install`)
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

test: install-test services chromium  ## run the whole test suite against real PostgreSQL and Redis
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

prod-check: install services  ## production settings on this machine: check --deploy, gunicorn + Celery workers + beat, an HTTP smoke test
	PYTHON=$(PY) PRODCHECK_DATABASE_URL=$(PRODCHECK_DATABASE_URL) PRODCHECK_REDIS_URL=$(PRODCHECK_REDIS_URL) bash scripts/prod_check.sh

bench: install-test services  ## print the benchmark tables (bench/)
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) $(PY) bench/run.py

gpu-wheelhouse:  ## download into wheelhouse/ the wheels bench/gpu.py needs on the lent GPU machine (bench/README.md)
	bash scripts/gpu_wheelhouse.sh

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) db.sqlite3 media staticfiles .pytest_cache
