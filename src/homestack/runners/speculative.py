"""llama-server's speculative decoding as one fleet setting: a draft model, or a draft-free n-gram mode.

Each key is one llama-server flag and applies to some modes only; the table below says which, so a
key set for a mode that ignores it is an error naming the key, not a silent no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import KeyedError
from .llama_options import CacheType

# llama-server's --spec-type values this build has (draft-eagle3/-mtp/... need special draft models)
SpecType = Literal["draft-simple", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache"]
_NGRAM_LOOKUP = ("ngram-simple", "ngram-map-k", "ngram-map-k4v")  # modes with --spec-ngram-<mode>-size-n/-m
# key -> (flag, the modes it applies to); "{type}" is the mode's name
_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "draft_model": ("--model-draft", ("draft-simple",)),
    "draft_max": ("--spec-draft-n-max", ("draft-simple",)),
    "draft_min": ("--spec-draft-n-min", ("draft-simple",)),
    "draft_p_min": ("--spec-draft-p-min", ("draft-simple",)),
    "draft_cache_type_k": ("--spec-draft-type-k", ("draft-simple",)),
    "draft_cache_type_v": ("--spec-draft-type-v", ("draft-simple",)),
    "ngram_size_n": ("--spec-{type}-size-n", _NGRAM_LOOKUP),
    "ngram_size_m": ("--spec-{type}-size-m", _NGRAM_LOOKUP),
    "ngram_min_hits": ("--spec-{type}-min-hits", _NGRAM_LOOKUP),
    "ngram_min": ("--spec-ngram-mod-n-min", ("ngram-mod",)),
    "ngram_max": ("--spec-ngram-mod-n-max", ("ngram-mod",)),
    "ngram_match": ("--spec-ngram-mod-n-match", ("ngram-mod",)),
    "lookup_cache_static": ("--lookup-cache-static", ("ngram-cache",)),
    "lookup_cache_dynamic": ("--lookup-cache-dynamic", ("ngram-cache",)),
}


class Speculative(BaseModel):
    """Speculative decoding for one llama.cpp model (llama-server --spec-type and its tuning flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: SpecType = Field(
        description="draft-simple: a smaller model with the same vocabulary drafts tokens; ngram-*: drafts are "
                    "looked up in the text so far (no second model; pays off when the answer repeats the prompt)."
    )
    draft_model: str | None = Field(
        None, description="draft-simple: GGUF path or package:NAME; it runs at the target's context and slots (no separate flag)."
    )
    draft_max: int | None = Field(None, ge=1, description="draft-simple: tokens drafted per step (--spec-draft-n-max; default 3).")
    draft_min: int | None = Field(None, ge=0, description="draft-simple: fewest tokens worth drafting (--spec-draft-n-min).")
    draft_p_min: float | None = Field(
        None, ge=0, le=1, description="draft-simple: stop drafting below this probability (--spec-draft-p-min)."
    )
    draft_cache_type_k: CacheType | None = Field(None, description="draft-simple: the draft's KV cache type for K.")
    draft_cache_type_v: CacheType | None = Field(None, description="draft-simple: the draft's KV cache type for V.")
    ngram_size_n: int | None = Field(None, ge=1, description="ngram-simple/map-k/map-k4v: lookup n-gram length (default 12).")
    ngram_size_m: int | None = Field(None, ge=1, description="ngram-simple/map-k/map-k4v: draft m-gram length (default 48).")
    ngram_min_hits: int | None = Field(None, ge=1, description="ngram-simple/map-k/map-k4v: hits before drafting (default 1).")
    ngram_min: int | None = Field(None, ge=1, description="ngram-mod: fewest tokens drafted (default 48).")
    ngram_max: int | None = Field(None, ge=1, description="ngram-mod: most tokens drafted (default 64).")
    ngram_match: int | None = Field(None, ge=1, description="ngram-mod: lookup length (default 24).")
    lookup_cache_static: str | None = Field(None, description="ngram-cache: a static lookup cache file (read only).")
    lookup_cache_dynamic: str | None = Field(None, description="ngram-cache: a dynamic lookup cache file (updated).")

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> Speculative:
        if self.type == "draft-simple" and self.draft_model is None:
            raise KeyedError("draft_model", "required with type: draft-simple (a GGUF path or package:NAME with the "
                                            "target's vocabulary); or choose a draft-free type: ngram-mod, ngram-simple...")
        for key in self.model_fields_set - {"type"}:
            modes = _FLAGS[key][1]
            if getattr(self, key) is not None and self.type not in modes:
                raise KeyedError(key, f"does not apply to type: {self.type}; it is for type: {' or '.join(modes)}")
        if self.ngram_min is not None and self.ngram_max is not None and self.ngram_min > self.ngram_max:
            raise KeyedError("ngram_min", f"{self.ngram_min} is above ngram_max {self.ngram_max}")
        if self.draft_min is not None and self.draft_max is not None and self.draft_min > self.draft_max:
            raise KeyedError("draft_min", f"{self.draft_min} is above draft_max {self.draft_max}")
        return self


def speculative_argv(spec: Speculative, draft_path: Path | None) -> list[str]:
    """llama-server's flags for ``spec``; ``draft_path`` is the resolved ``draft_model``."""
    argv = ["--spec-type", spec.type]
    for key, (flag, _) in _FLAGS.items():
        value = getattr(spec, key)
        if value is not None:
            value = draft_path if key == "draft_model" else value
            argv += [flag.format(type=spec.type), str(value)]
    return argv
