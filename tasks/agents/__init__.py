"""Agents: the task, its tool loop and tools, prompts, and the one scheduler both pipelines use."""
