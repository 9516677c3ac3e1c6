"""The benchmarks, run as scripts (``python bench/bench_core.py``).

A package so that each file has one module name (``bench.bench_core``) for mypy and tests.
"""
