"""The base of every config model, and the small types the config's sections share.

Split from :mod:`reprise.config.models` (which re-exports these names) so that the cache
parameters (:mod:`reprise.config.cache_params`) and the other sections stand on it alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)
from pydantic_core import PydanticCustomError

#: LiteLLM's call type names for ``cache_params.supported_call_types``.
CallType = Literal[
    "completion",
    "acompletion",
    "embedding",
    "aembedding",
    "atext_completion",
    "text_completion",
    "atranscription",
    "transcription",
    "arerank",
    "rerank",
    "aresponses",
    "responses",
]
#: LiteLLM's ``cache_params.mode``: cache every request, or only those that opt in.
CacheMode = Literal["default_on", "default_off"]

def default_call_types() -> list[CallType]:
    return ["acompletion", "completion", "aembedding", "embedding", "atext_completion", "text_completion",
            "aresponses", "responses"]


_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_namespace(value: str | None) -> str | None:
    if value is not None and not _NAMESPACE.fullmatch(value):
        raise PydanticCustomError(
            "namespace", "namespace must be 1-128 characters of A-Z a-z 0-9 . _ -"
        )
    return value


class Section(BaseModel):
    """Base of every config model: frozen, accepts undeclared keys, hides them in repr.

    Undeclared keys may hold secrets Reprise never reads (``database_url``, a Redis
    password), so ``repr`` shows declared fields only; :attr:`extras` has the rest.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def extras(self) -> dict[str, Any]:
        """The keys of this section that the model does not declare, as given."""
        return dict(self.model_extra or {})

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            if name in fields:
                yield name, value
