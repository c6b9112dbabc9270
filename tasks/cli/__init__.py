"""The `agentmill` command: build, issues, serve and doctor (see tasks.cli.main)."""
