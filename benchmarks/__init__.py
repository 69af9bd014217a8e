"""Benchmarks that print figures beside a baseline (run from the repo root)."""
