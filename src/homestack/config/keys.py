"""The fleet file's `keys:` section: named keys with roles, scopes and limits; secrets by reference."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RoleName = Literal["admin", "inference", "knowledge-read", "knowledge-write"]


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str | None = Field(None, description="Environment variable that holds the key's secret.")
    secret_file: Path | None = Field(None, description="File that holds the key's secret (e.g. /run/secrets/NAME).")
    roles: list[RoleName] = Field(min_length=1, description="What the key may do; a key may have several roles.")
    models: list[str] = Field(["*"], description="Models (names or aliases) the key may use: glob patterns.")
    routes: list[str] = Field(["*"], description="Routes (virtual models) the key may use: glob patterns.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute, input and output, counted from usage.")
    concurrency: int | None = Field(None, ge=1, description="Requests in flight at once.")
    expires: datetime | None = Field(None, description="When the key stops working (ISO 8601).")

    @model_validator(mode="after")
    def _one_secret(self) -> "KeySpec":
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file (secrets are never written inline)")
        return self
