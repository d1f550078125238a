"""Config models for virtual API keys and tenants (``general_settings.virtual_keys``).

LiteLLM keeps virtual keys in a database and groups them in *teams*; Reprise keeps
them in the config file (and in ``keys_file``, a SQLite store of hashed keys written by
the admin API, :mod:`reprise.server.key_store`),
each key belonging to one *tenant* (``team_id`` is accepted as an alias). A key may
be written in clear (typically ``os.environ/NAME``) or as its sha256; either way only
the hash is kept in memory after loading. A blank ``key`` is a config error (loader.py).
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from reprise.config.section import Section, check_namespace

_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_tenant(value: str) -> str:
    if not _TENANT.fullmatch(value):
        raise PydanticCustomError("tenant", "tenant must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _check_sha256(value: str | None) -> str | None:
    if value is not None and not _SHA256.fullmatch(value):
        raise PydanticCustomError("key_sha256", "key_sha256 must be 64 lowercase hex characters")
    return value


Tenant = Annotated[str, AfterValidator(_check_tenant)]


class KeyCacheDefaults(Section):
    """Per-key defaults that replace the gateway's ``cache_params`` values for that key."""

    mode: Literal["default_on", "default_off"] | None = None
    ttl: float | None = Field(default=None, gt=0)
    namespace: Annotated[str | None, AfterValidator(check_namespace)] = None


class VirtualKeyConfig(Section):
    """One API key: its secret (or hash), its tenant, its cache defaults."""

    key: SecretStr | None = None
    key_sha256: Annotated[str | None, AfterValidator(_check_sha256)] = None
    tenant: Tenant = Field(validation_alias=AliasChoices("tenant", "team_id"))
    cache: KeyCacheDefaults | None = None
    #: Requests this key may have in progress at once (LiteLLM's key setting of the same name);
    #: unset: ``general_settings.max_parallel_requests_per_key``.
    max_parallel_requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_secret(self) -> VirtualKeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise PydanticCustomError("virtual_key", "give exactly one of 'key' or 'key_sha256'")
        return self

    @property
    def digest(self) -> str:
        """The sha256 hex of the key: the only form kept after loading."""
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()
