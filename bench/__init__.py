"""Benchmarks: each `bench/<name>/run.py` prints its figures (see README "Benchmarks")."""
