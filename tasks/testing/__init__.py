"""Test doubles that tests and benchmarks share: fake APIs, fixture repos, a Prefect server."""
