"""The `agentmill` command: build, issues, serve, doctor and limits (see tasks.cli.main)."""
