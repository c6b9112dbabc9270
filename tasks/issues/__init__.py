"""The issue pipeline: GitHub, the clone, the issue team, review checks, pull requests."""
