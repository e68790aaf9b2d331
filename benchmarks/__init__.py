"""Benchmarks: scripts that print tables (ratios against a baseline measured in the same run)."""
