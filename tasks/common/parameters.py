"""A flow's parameters, written once as a pydantic model, and everything made from it.

The model (names, types, defaults, a description per field, validators) is
the only definition. From it come the flow function's signature and the
`Args:` of its docstring (Prefect builds the deployment's Run form from
those two), the validation of a call before Prefect creates a run (Prefect
checks parameters only after the run exists, and refuses parameters over
512 KB with a bare 422), and the command line's options and their help.
So a parameter added to the model shows up in the UI, the CLI and Python
calls at once, and is checked the same way everywhere.
"""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar, get_args, get_origin

from prefect import Flow
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tasks.common.errors import AgentmillError

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")


class InvalidParameters(AgentmillError, ValueError):
    """A flow was called with parameters its model refuses; the message says which and why."""


def validate(model: type[M], values: dict[str, Any]) -> M:
    """`model(**values)`, with pydantic's errors turned into one line per problem."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "parameters"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise InvalidParameters("; ".join(problems)) from None


def with_parameters(model: type[BaseModel]) -> Callable[[F], F]:
    """Give a `**params` flow function the model's fields as its signature and `Args:`.

    Keyword-only, so Prefect passes every parameter by name; annotations keep
    their constraints (`Annotated[..., Gt(0)]`), so Prefect's own check of a
    run's parameters (a deployment's, say) enforces them too.
    """

    def decorate(fn: F) -> F:
        returns = inspect.signature(fn, eval_str=True).return_annotation
        parameters = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if field.is_required() else field.default,
                annotation=_annotation(field),
            )
            for name, field in model.model_fields.items()
        ]
        signature = inspect.Signature(parameters, return_annotation=returns)
        fn.__signature__ = signature  # type: ignore[attr-defined]
        summary = (inspect.getdoc(fn) or "").strip()
        args = [
            f"    {name}: {field.description or name}" for name, field in model.model_fields.items()
        ]
        fn.__doc__ = f"{summary}\n\nArgs:\n" + "\n".join(args) + "\n"
        return fn

    return decorate


class CheckedFlow(Flow[P, R]):
    """A flow whose call is checked against its parameter model before Prefect creates a run.

    Prefect validates parameters only once the run exists (and refuses a run
    whose parameters pass 512 KB with a bare 422); checking first turns an
    empty or 1 MB idea into the model's message, with nothing created.
    """

    def __init__(self, fn: Callable[P, R], *, model: type[BaseModel], **options: Any) -> None:
        super().__init__(fn=fn, **options)
        self.model = model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = {k: v for k, v in kwargs.items() if k not in ("return_state", "wait_for")}
        validate(self.model, inspect.signature(self.fn).bind(*args, **call).arguments)
        return super().__call__(*args, **kwargs)


def _annotation(field: FieldInfo) -> Any:
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def command_line(
    model: type[BaseModel],
    *,
    prog: str,
    description: str,
    positional: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """An argparse parser with one option per field (see `add_arguments`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, model, positional)
    return parser


def add_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], positional: Sequence[str] = ()
) -> None:
    """One option per field (`--budget-usd` for `budget_usd`), on any parser or subcommand.

    Booleans are flags, Literals are choices, optional fields default to
    None; help texts are the fields' descriptions, with the default.
    """
    for name, field in model.model_fields.items():
        kind, optional = _plain(field.annotation)
        help_text = field.description or ""
        if not field.is_required() and field.default not in (None, False, ""):
            help_text += f" (default {field.default})"
        if name in positional:
            parser.add_argument(name, help=help_text)
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action="store_true", dest=name, help=help_text)
        elif get_origin(kind) is typing.Literal:
            choices = [str(c) for c in get_args(kind)]
            parser.add_argument(
                flag, choices=choices, default=field.default, dest=name, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                type=kind if kind in (int, float) else str,
                default=None if optional and field.default is None else field.default,
                dest=name,
                help=help_text,
            )


def checked_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], args: argparse.Namespace
) -> dict[str, Any]:
    """The model's fields out of parsed `args`, checked; a refusal is a usage error (exit 2)."""
    params = {name: getattr(args, name) for name in model.model_fields}
    try:
        validate(model, params)
    except InvalidParameters as exc:
        parser.error(str(exc))
    return params


def _plain(annotation: Any) -> tuple[Any, bool]:
    """(the type without Annotated and None, whether None is allowed)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _plain(members[0])[0], True
    return annotation, False
