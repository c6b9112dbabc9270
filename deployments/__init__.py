"""Deployments: `python -m deployments.serve` serves every flow in one process."""
