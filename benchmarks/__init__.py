"""agentmill's performance harness: `python -m benchmarks.run` writes results.md/json here."""
