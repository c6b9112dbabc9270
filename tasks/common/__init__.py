"""What both pipelines stand on: workspace, git, secrets, processes, retries, parameters."""
