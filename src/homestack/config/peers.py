"""The fleet file's `peers:` section: other homestack gateways this one forwards to; keys by reference."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Peer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://[^/]+/?$", description="The peer gateway's base URL (no /v1).")
    key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding a key the peer accepts with the admin role (it reads the "
        "peer's /admin API and sends requests); none: the peer has no keys.",
    )
    timeout: float = Field(2, gt=0, description="Seconds a poll of the peer's admin API may take.")
    poll_interval: float = Field(5, gt=0, description="Seconds between polls while the peer answers.")
    max_backoff: float = Field(60, gt=0, description="Longest wait between polls of a peer that is down.")
