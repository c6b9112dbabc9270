"""agentmill's Prefect flows, one per file: the file name is the flow name."""
