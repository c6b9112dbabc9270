"""Credentials blocks, loaded by name when a run starts, never when a deployment is made.

A flow takes the *name* of its credentials block as a parameter (a name is
no secret, so Prefect may record it) and loads the block itself, at run
time. So a deployment needs no block to exist, nothing secret lands in a
deployment's or a flow run's record, and a key rotated by saving the block
again is used by the next run without redeploying.

The default names (`anthropic`, `github`) may be absent: the run then falls
back to the environment (and build_app, without a key, to the offline
model). Any other name is the user asking for that block: missing, it is an
error that says how to create it, rather than a silent fall-back.
"""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block

from tasks.common.errors import AgentmillError

B = TypeVar("B", bound=Block)

DEFAULT_ANTHROPIC_BLOCK = "anthropic"
DEFAULT_GITHUB_BLOCK = "github"


class CredentialsBlockMissing(AgentmillError, LookupError):
    """A credentials block named explicitly does not exist; the message says how to create it."""


async def load_credentials(block_type: type[B], name: str, *, default_name: str) -> B | None:
    """The block of `block_type` saved as `name`, or None to fall back to the environment.

    None when `name` is blank, or is `default_name` and no such block is saved
    (Prefect's `aload` raises ValueError for a missing block document, and for
    a block type nobody registered). Loaded with `aload`: inside an async flow
    `Block.load` would hand back a coroutine.
    """
    name = name.strip()
    if not name:
        return None
    try:
        block = await block_type.aload(name)
    except ValueError as exc:
        if name == default_name:
            return None
        kind = block_type.get_block_type_name()
        raise CredentialsBlockMissing(
            f"no {kind} block named {name!r}: create it in the Prefect UI (Blocks, after "
            f"`prefect block register -m blocks`) or with {block_type.__name__}(...).save("
            f"{name!r}); or leave the name empty to use the environment"
        ) from exc
    assert isinstance(block, block_type)
    return block
