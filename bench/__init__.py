"""Benchmarks (README "Gateway benchmark"): scripts run as files; a package so one can reuse another's set-up."""
