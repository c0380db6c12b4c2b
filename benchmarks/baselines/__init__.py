"""Baselines the benchmarks compare segflow against (what a competent user would write)."""
