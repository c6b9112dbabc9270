"""One agent's inputs, and the cache key that says when its output can be reused.

An `AgentJob` holds no secret and no client, so it can be a task parameter;
its `cache_key()` hashes exactly what the agent's output depends on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from blocks.team import AgentTeam, Role
from tasks.agents.output import AgentOutput
from tasks.agents.prompts import PROMPTS_VERSION
from tasks.model.caching import Ttl
from tasks.model.endpoint import Provider

# Bump to invalidate every cached agent output at once (e.g. after a change in
# how outputs are built that the other key inputs do not capture). v2: results
# are pickled with their class's import path, and AgentOutput moved to
# tasks.agents.output; entries written under v1 name a module that is gone.
CACHE_KEY_VERSION = "agentmill-agent-v2"


class AgentSettings(BaseModel):
    """How the model is called: what changes what it returns, and how the prompt is cached."""

    model: str
    max_turns: int = 12
    max_tokens: int = 8192
    max_agent_tokens: int = 400_000
    timeout_s: float = 300.0
    max_file_bytes: int = 256_000
    max_files: int = 50
    run_timeout_s: float = 120.0
    # Prompt caching changes what a run costs, never what the model answers:
    # these three stay out of the cache key (see AgentJob.cache_key).
    prompt_caching: bool = True
    shared_prefix_ttl: Ttl = "5m"
    warm_up: bool = True


# AgentSettings fields that do not change an agent's output, left out of its cache key.
NOT_IN_KEY = {"prompt_caching", "shared_prefix_ttl", "warm_up"}


def agent_settings(team: AgentTeam, role: Role) -> AgentSettings:
    """How `role` calls its model in `team`; one place, so every scheduler runs the same agent."""
    return AgentSettings(
        model=team.model_for(role),
        max_turns=team.max_turns,
        max_tokens=team.max_tokens,
        max_agent_tokens=team.max_agent_tokens,
        timeout_s=team.timeout_for(role),
        run_timeout_s=team.run_timeout_s,
        prompt_caching=team.prompt_caching,
        shared_prefix_ttl=team.shared_prefix_ttl,
        warm_up=team.warm_up_shared_prefix,
    )


class AgentJob(BaseModel):
    """One agent's inputs. Holds no secret and no client, so it can be a task parameter."""

    role: Role
    settings: AgentSettings
    provider: Provider
    idea: str
    base_tree: str
    workdir: str
    feedback: list[str] = Field(
        default_factory=list, description="Reviewers' comments on an earlier plan (approval gate)."
    )
    upstream: list[AgentOutput] = Field(
        default_factory=list,
        description="Outputs of the transitive dependencies, in topological order.",
    )
    result_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON schema of the structured result `submit` must carry; None for none.",
    )
    protected_dirs: dict[str, str] = Field(
        default_factory=dict,
        description="Top-level folders write_file refuses in this run, each with the reason.",
    )

    def cache_key(self) -> str:
        """A hash of everything the output depends on, and of nothing else.

        In: the role's instructions and prompt version (what it is asked), our
        prompt and tool texts (`PROMPTS_VERSION`), provider, model id and
        sampling settings (who answers and how), the idea, the base tree id and
        the digests of the upstream outputs (everything it can read). Out: the
        flow-run id (a new run must reuse work), the workdir path (a fresh
        workdir restores from the cache), any key or client (secrets and
        process state have no place in a key that is stored and logged), and
        the prompt-caching settings (they change the cost, not the answer).
        """
        payload = {
            "v": CACHE_KEY_VERSION,
            "prompts": PROMPTS_VERSION,
            "role": self.role.model_dump(
                include={"id", "title", "depends_on", "instructions", "prompt_version"}
            ),
            "provider": self.provider,
            "settings": self.settings.model_dump(exclude=NOT_IN_KEY),
            "idea": self.idea,
            "base_tree": self.base_tree,
            "feedback": self.feedback,
            "upstream": {o.role: o.digest() for o in self.upstream},
        }
        if self.result_schema is not None:  # what it must answer; absent keeps old keys valid
            payload["result_schema"] = self.result_schema
        if self.protected_dirs:  # what it may not write changes what it writes; absent: as before
            payload["protected_dirs"] = sorted(self.protected_dirs)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]

    def brief(self) -> dict[str, Any]:
        """The part of the manifest an agent reads: fixed for the build, so it is in the key."""
        return {
            "idea": self.idea,
            "base_tree": self.base_tree,
            "role": self.role.id,
            "title": self.role.title,
            "phase": self.role.phase,
            "track": self.role.track,
            "dependencies": self.role.depends_on,
            "readable_outputs": [o.role for o in self.upstream],
            **({"reviewer_feedback": self.feedback} if self.feedback else {}),
        }
