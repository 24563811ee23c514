"""Load tests and the benchmark driver (docs/performance.md).

python -m loadtests.bench --db sqlite --cards 1000     # endpoint rates, latencies, ratios
make loadtest                                          # the locust day-in-a-city scenario
"""
