"""Parameters defined once: the flow's signature, its Args, the CLI and the checks come from it."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel, Field

from tasks.common.parameters import InvalidParameters, command_line, validate, with_parameters


class Request(BaseModel):
    idea: str = Field(min_length=1, description="What to build.")
    mode: Literal["fast", "slow"] = Field(default="fast", description="How.")
    budget_usd: float | None = Field(default=None, gt=0, description="At most this.")
    fresh: bool = Field(default=False, description="Start over.")


@with_parameters(Request)
def flow_fn(**params: Any) -> str:
    """Do the thing."""
    return str(params)


def test_the_signature_and_docstring_come_from_the_model() -> None:
    signature = inspect.signature(flow_fn)
    assert list(signature.parameters) == ["idea", "mode", "budget_usd", "fresh"]
    assert signature.parameters["mode"].default == "fast"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    schema = parameter_schema(flow_fn).model_dump_for_openapi()  # what the Prefect UI shows
    assert schema["required"] == ["idea"]
    assert schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert schema["properties"]["budget_usd"]["description"] == "At most this."
    assert schema["properties"]["budget_usd"]["anyOf"][0]["exclusiveMinimum"] == 0


def test_the_command_line_has_an_option_per_field() -> None:
    parser = command_line(Request, prog="x", description="d", positional=("idea",))
    args = vars(parser.parse_args(["an idea", "--mode", "slow", "--budget-usd", "2.5", "--fresh"]))
    assert args == {"idea": "an idea", "mode": "slow", "budget_usd": 2.5, "fresh": True}
    assert vars(parser.parse_args(["x"])) == {
        "idea": "x",
        "mode": "fast",
        "budget_usd": None,
        "fresh": False,
    }
    assert "At most this." in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["x", "--mode", "medium"])


def test_validation_says_which_field_and_why() -> None:
    with pytest.raises(InvalidParameters, match=r"idea: String should have at least 1 character"):
        validate(Request, {"idea": ""})
    with pytest.raises(InvalidParameters, match=r"budget_usd: Input should be greater than 0"):
        validate(Request, {"idea": "x", "budget_usd": -1})
    assert validate(Request, {"idea": "x"}).mode == "fast"
