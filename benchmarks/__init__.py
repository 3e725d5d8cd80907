"""Benchmarks: scripts that print their figures and ratios from one run (never test assertions).

Run them all with ``make bench`` (``make bench-smoke`` for the tiny CI version) or one at a time with
``.venv/bin/python -m benchmarks.bench_cap --help``. Results and commands: docs/performance.md.
"""
