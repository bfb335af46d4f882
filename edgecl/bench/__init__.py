"""Benchmarks of the paper's claims: `continual` (task switches) and the executors it runs on."""
