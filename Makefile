# Benchmarks and load tests (docs/performance.md). Both start their own server on 127.0.0.1.
#   make bench DB=postgres CARDS=100000
#   make loadtest DB=sqlite LOADTEST_ARGS="--scale 3 --time 120s"
PY ?= .venv/bin/python
DB ?= sqlite
CARDS ?= 1000
BENCH_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: bench loadtest

bench:
	$(PY) -m loadtests.bench --db $(DB) --cards $(CARDS) $(BENCH_ARGS)

loadtest:
	$(PY) -m loadtests.run_locust --db $(DB) $(LOADTEST_ARGS)
