"""The code the flows run, in subpackages that say what they are.

common: workspace paths, git, secrets, processes, retries, parameters, logs.
model: the Anthropic endpoint and client, streaming, pricing, budget, the offline model.
agents: the agent task, its tool loop and tools, prompts, the one DAG scheduler.
build: build_app's planning, phases, commits, store, report, events, approval.
issues: the issue pipeline's GitHub client, clone, team, checks, pull request, report.
testing: fakes of the Messages and GitHub APIs, fixture repositories, a Prefect server.
"""
