# Screenshots of the pages (docs/pages.md) at a phone's width and a desktop's, into docs/screens/:
#   make screens
# with the browser the tests use: Debian's chromium (./scripts/test installs it when root).
# Benchmarks and load tests (docs/performance.md). Both start their own server on 127.0.0.1.
#   make bench DB=postgres CARDS=100000
#   make loadtest DB=sqlite LOADTEST_ARGS="--scale 3 --time 120s"
# Each installs into .venv what it needs first: the app's requirements, and for the load test
# locust at the version requirements-dev.txt pins (not the rest of it: pyscard needs
# libpcsclite-dev to build, see scripts/test).
PY ?= .venv/bin/python
DB ?= sqlite
CARDS ?= 1000
BENCH_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: bench loadtest deps loadtest-deps screens screens-deps

$(PY):
	python3 -m venv .venv

deps: $(PY)
	@$(PY) -c "import flask, gunicorn, sqlalchemy" 2>/dev/null || \
		$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt

loadtest-deps: deps
	@$(PY) -c "import locust" 2>/dev/null || \
		$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt $$(grep '^locust==' requirements-dev.txt)

bench: deps
	$(PY) -m loadtests.bench --db $(DB) --cards $(CARDS) $(BENCH_ARGS)

loadtest: loadtest-deps
	$(PY) -m loadtests.run_locust --db $(DB) $(LOADTEST_ARGS)

screens-deps: deps
	@$(PY) -c "import playwright" 2>/dev/null || \
		$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt $$(grep '^playwright==' requirements-dev.txt)

screens: screens-deps
	$(PY) -m tests.browser.screens --out docs/screens
