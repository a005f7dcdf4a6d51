"""Benchmarks (extra `bench`): latency per stage and end to end, and quality against baselines."""
