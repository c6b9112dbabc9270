"""The agent team: roles, their dependencies and the model tier each one runs on.

`AgentTeam` is a Prefect Block so a team can be edited in the UI and loaded by
name (the `team` parameter); `default_team()` ships in code so a fresh machine needs
no server state to run.
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, Field

Tier = Literal["opus", "sonnet", "haiku"]

PHASES: tuple[str, ...] = ("planning", "architecture", "implementation", "quality", "ops")

# The current model of each tier. Roles name a tier, never a model id, so a
# new model generation is one edit here (or in a saved block).
DEFAULT_TIER_MODELS: dict[str, str] = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
}

# Wall-clock cap for one model request (streamed), per tier: a long opus answer
# takes minutes, a haiku one seconds; past this the request counts as a
# retryable timeout.
DEFAULT_TIER_TIMEOUTS_S: dict[str, float] = {"opus": 600.0, "sonnet": 300.0, "haiku": 120.0}


class Role(BaseModel):
    """One agent of the team: what it does, where it sits in the graph, which tier."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="Upper-case identifier.")
    title: str
    phase: str
    track: str
    tier: str = "haiku"
    depends_on: list[str] = Field(default_factory=list)
    instructions: str
    prompt_version: int = 1
    checks: list[str] = Field(
        default_factory=list,
        description="Commands the phase's verification runs besides the detected ones.",
    )


class AgentTeam(Block):
    """A team of agents: roles with dependencies, and the model behind each tier."""

    _block_type_name = "AgentTeam"
    _block_type_slug = "agentmill-agent-team"
    _description = (
        "The roles of an agentmill team (phase, track, tier, dependencies, instructions) "
        "and the model id each tier runs on."
    )
    _documentation_url = "https://github.com/agentmill/agentmill#teams"  # type: ignore[assignment]
    _logo_url = None

    roles: list[Role] = Field(description="The agents, each with its phase and dependencies.")
    phases: list[str] = Field(
        default_factory=lambda: list(PHASES), description="Phase names in commit order."
    )
    tier_models: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_MODELS),
        description="Model id for each tier (opus, sonnet, haiku).",
    )
    tier_timeouts_s: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_TIMEOUTS_S),
        description="Seconds one streamed model request may take, per tier.",
    )
    max_turns: int = Field(default=12, ge=1, description="Model requests per agent at most.")
    max_tokens: int = Field(default=8192, ge=1, description="Output tokens per model request.")
    max_agent_tokens: int = Field(
        default=400_000, ge=1, description="Input plus output tokens per agent at most."
    )
    verify: bool = Field(
        default=True,
        description="Run the project's checks (lint, tests) before a phase with code commits.",
    )
    fix_rounds: int = Field(
        default=2, ge=0, le=10, description="Rounds of fixes after failing checks, at most."
    )
    fixer_tier: str = Field(
        default="sonnet", description="Tier of the fixer for failures no agent's file explains."
    )
    check_timeout_s: float = Field(default=300.0, gt=0, description="Seconds one check may run.")
    run_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds one command of an agent's run tool may take."
    )
    # Fleet-wide limits, per tier: `agentmill limits apply --team NAME` turns them into
    # Prefect global concurrency limits; a run reads the limits, not these fields.
    tier_requests_per_minute: dict[str, int] = Field(
        default_factory=dict,
        description="Model requests per minute, per tier, for the whole fleet (your API limits).",
    )
    tier_max_in_flight: dict[str, int] = Field(
        default_factory=dict,
        description="Model requests in flight at once, per tier, for the whole fleet.",
    )
    prompt_caching: bool = Field(
        default=True,
        description="Mark prompt-cache breakpoints (the team's shared prefix, each agent's "
        "growing conversation), so re-sent tokens cost a cache read instead of full input.",
    )
    shared_prefix_ttl: Literal["5m", "1h"] = Field(
        default="5m",
        description="How long the team's shared prompt prefix stays cached: '1h' when agents "
        "of one model start more than 5 minutes apart (a 1-hour write costs 2x the input "
        "price, a 5-minute one 1.25x; a read 0.1x or less either way).",
    )
    warm_up_shared_prefix: bool = Field(
        default=True,
        description="When several agents are about to start on an uncached shared prefix, "
        "write it once with one small request first, so they read it instead of all writing it.",
    )

    def model_for(self, role: Role) -> str:
        """The model id a role runs on; an unknown tier is a team error, not a KeyError."""
        try:
            return self.tier_models[role.tier]
        except KeyError:
            known = ", ".join(sorted(self.tier_models))
            raise ValueError(
                f"role {role.id} names tier {role.tier!r}, which the team does not map to a "
                f"model; use one of: {known}, or add it to tier_models"
            ) from None

    def timeout_for(self, role: Role) -> float:
        return self.tier_timeouts_s.get(role.tier, max(self.tier_timeouts_s.values(), default=300))


def _role(
    id: str,
    title: str,
    phase: str,
    track: str,
    tier: Tier,
    depends_on: list[str],
    instructions: str,
) -> Role:
    return Role(
        id=id,
        title=title,
        phase=phase,
        track=track,
        tier=tier,
        depends_on=depends_on,
        instructions=instructions,
    )


def default_roles() -> list[Role]:
    """A software company in 32 roles.

    Opus only where a wrong call is expensive to undo (architecture, security
    design and review); sonnet for leads and reviewers who weigh trade-offs;
    haiku for the developers, who follow a lead's plan.
    """
    p, a, i, q, o = PHASES
    return [
        _role("PM", "Product manager", p, "product", "sonnet", [],
              "Turn the idea into requirements: users, user stories with acceptance criteria, "
              "scope and non-goals. Write docs/requirements.md."),
        _role("UX_RESEARCHER", "UX researcher", p, "product", "haiku", ["PM"],
              "Describe the personas and their main journeys through the product."),
        _role("ARCHITECT", "Software architect", a, "system", "opus", ["PM"],
              "Choose the architecture: components, interfaces, data flow, technology choices "
              "with reasons. Write docs/architecture.md."),
        _role("DATA_ARCHITECT", "Data architect", a, "system", "sonnet", ["ARCHITECT"],
              "Design the data model and storage: entities, schemas, migrations, retention."),
        _role("SECURITY_ARCHITECT", "Security architect", a, "system", "opus", ["ARCHITECT"],
              "Write the threat model and the security requirements each track must meet."),
        _role("UI_DESIGNER", "UI designer", a, "design", "sonnet", ["PM", "UX_RESEARCHER"],
              "Design the screens, the component library and the visual language."),
        _role("UX_DESIGNER", "UX designer", a, "design", "haiku", ["UI_DESIGNER"],
              "Specify interactions, empty and error states, and accessibility requirements."),
        _role("WEB_LEAD", "Tech lead, web UI", i, "web_ui", "sonnet",
              ["ARCHITECT", "UI_DESIGNER", "UX_DESIGNER"],
              "Plan the web front end: structure, state management, routing, build."),
        _role("WEB_DEV", "Developer, web UI", i, "web_ui", "haiku", ["WEB_LEAD"],
              "Implement the web UI pages following the lead's plan."),
        _role("WEB_COMPONENTS_DEV", "Developer, UI components", i, "web_ui", "haiku",
              ["WEB_LEAD"], "Implement the shared UI components and their stories."),
        _role("API_LEAD", "Tech lead, core API", i, "core_api", "sonnet",
              ["ARCHITECT", "DATA_ARCHITECT"],
              "Specify the HTTP API: resources, endpoints, errors, versioning."),
        _role("API_DEV", "Developer, core API", i, "core_api", "haiku", ["API_LEAD"],
              "Implement the API endpoints with validation and tests."),
        _role("AUTH_DEV", "Developer, authentication", i, "core_api", "haiku",
              ["API_LEAD", "SECURITY_ARCHITECT"],
              "Implement authentication and authorisation per the security requirements."),
        _role("CORE_LEAD", "Tech lead, core systems", i, "core_systems", "sonnet",
              ["ARCHITECT", "DATA_ARCHITECT"],
              "Plan the domain logic and background jobs."),
        _role("CORE_DEV", "Developer, core systems", i, "core_systems", "haiku", ["CORE_LEAD"],
              "Implement the domain services."),
        _role("DB_DEV", "Developer, persistence", i, "core_systems", "haiku",
              ["CORE_LEAD", "DATA_ARCHITECT"], "Implement the schema, migrations and queries."),
        _role("PLATFORM_LEAD", "Tech lead, platform", i, "platform", "sonnet", ["ARCHITECT"],
              "Plan configuration, logging, packaging and the runtime platform."),
        _role("PLATFORM_DEV", "Developer, platform", i, "platform", "haiku", ["PLATFORM_LEAD"],
              "Implement configuration, logging and containerisation."),
        _role("INTEGRATIONS_LEAD", "Tech lead, integrations", i, "integrations", "sonnet",
              ["ARCHITECT", "API_LEAD"], "Plan the third-party integrations and webhooks."),
        _role("INTEGRATIONS_DEV", "Developer, integrations", i, "integrations", "haiku",
              ["INTEGRATIONS_LEAD"], "Implement the integrations with retries and tests."),
        _role("TEST_LEAD", "Test lead", q, "testing", "sonnet", ["PM", "ARCHITECT"],
              "Write the test strategy: levels, tools, coverage goals, test data."),
        _role("UNIT_TEST_DEV", "Test developer, unit", q, "testing", "haiku",
              ["TEST_LEAD", "API_DEV", "CORE_DEV", "DB_DEV", "CHECKS_IMPLEMENTATION"],
              "Write unit tests for the API and the core services."),
        _role("E2E_TEST_DEV", "Test developer, end to end", q, "testing", "haiku",
              ["TEST_LEAD", "WEB_DEV", "API_DEV"], "Write end-to-end tests of the main journeys."),
        _role("CODE_QUALITY_REVIEWER", "Code-quality reviewer", q, "review", "sonnet",
              ["WEB_DEV", "WEB_COMPONENTS_DEV", "API_DEV", "CORE_DEV", "PLATFORM_DEV",
               "INTEGRATIONS_DEV", "CHECKS_IMPLEMENTATION"],
              "Review the implementation for clarity, duplication and maintainability; the "
              "checks' verdict (read_output('CHECKS_IMPLEMENTATION')) says what really runs."),
        _role("SECURITY_REVIEWER", "Security reviewer", q, "review", "opus",
              ["SECURITY_ARCHITECT", "AUTH_DEV", "API_DEV", "INTEGRATIONS_DEV",
               "CHECKS_IMPLEMENTATION"],
              "Review the implementation against the threat model; list findings by severity."),
        _role("PERF_REVIEWER", "Performance reviewer", q, "review", "haiku",
              ["CORE_DEV", "DB_DEV", "CHECKS_IMPLEMENTATION"],
              "Review queries and hot paths; propose benchmarks."),
        _role("A11Y_REVIEWER", "Accessibility reviewer", q, "review", "haiku",
              ["WEB_DEV", "WEB_COMPONENTS_DEV", "UX_DESIGNER"],
              "Review the UI against WCAG 2.2 AA."),
        _role("DEVOPS", "DevOps engineer", o, "delivery", "sonnet",
              ["PLATFORM_DEV", "ARCHITECT"], "Write the deployment: environments, IaC, secrets."),
        _role("CI_ENGINEER", "CI engineer", o, "delivery", "haiku",
              ["DEVOPS", "UNIT_TEST_DEV", "E2E_TEST_DEV"],
              "Write the CI pipeline: lint, tests, build, release."),
        _role("SRE", "Site reliability engineer", o, "delivery", "haiku", ["DEVOPS"],
              "Write monitoring, alerts and runbooks."),
        _role("RELEASE_MANAGER", "Release manager", o, "delivery", "haiku",
              ["CI_ENGINEER", "CODE_QUALITY_REVIEWER", "SECURITY_REVIEWER", "CHECKS_QUALITY"],
              "Write the release checklist and the changelog."),
        _role("TECH_WRITER", "Technical writer", o, "docs", "haiku",
              ["API_DEV", "WEB_DEV", "DEVOPS"], "Write the README and the user guide."),
    ]  # fmt: skip


def checks_id(phase: str) -> str:
    """The id of a phase's verification node, which roles may name in depends_on."""
    return "CHECKS_" + phase.upper()


def default_team() -> AgentTeam:
    """The team that ships with agentmill; `team="default"` uses it without a server."""
    return AgentTeam(roles=default_roles())
