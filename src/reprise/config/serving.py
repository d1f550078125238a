"""What a config needs before it may serve: closed by default.

Parsing (:mod:`reprise.config.loader`) accepts any well-formed file, so a library user
can build a config for anything; this is the stricter check for the one use that opens
a port. ``reprise serve``, every worker's app and ``reprise config check`` call
:func:`check_serving`, so the check and the server can never disagree.

A gateway without a master key answers anyone: its cache, its upstream credits, its
admin routes. That must be said on purpose (``general_settings.allow_unauthenticated:
true``), never reached by leaving a line out. A master key shorter than
:data:`MIN_MASTER_KEY_LENGTH` is refused as well: such keys (LiteLLM's docs use
``sk-1234``) are copied from examples and guessed in a few tries.
"""

from __future__ import annotations

import hashlib
import logging

from reprise.config.models import GatewayConfig
from reprise.errors import ConfigError

log = logging.getLogger("reprise.config")

MIN_MASTER_KEY_LENGTH = 16
"""Characters. ``/key/generate`` makes 46-character keys; 16 random ones are far out of guessing reach."""

MASTER_KEY = "general_settings.master_key"
ALLOW_OPEN = "general_settings.allow_unauthenticated"


def check_serving(config: GatewayConfig) -> None:
    """ConfigError naming the setting if ``config`` must not serve; a warning if it serves open."""
    settings = config.general_settings
    master = settings.master_key
    _check_virtual_keys(config)
    if master is None:
        if not settings.allow_unauthenticated:
            raise ConfigError(
                "not set: without it anyone who can reach the port may use the gateway and its admin "
                f"routes. Set a master key of at least {MIN_MASTER_KEY_LENGTH} characters "
                f"(e.g. master_key: os.environ/REPRISE_MASTER_KEY), or set {ALLOW_OPEN}: true "
                "to serve without one on purpose",
                MASTER_KEY,
            )
        if settings.keys_file:
            raise ConfigError(
                "keys in keys_file are made and revoked through /key/generate and /key/delete, which need "
                "the master key: set general_settings.master_key", MASTER_KEY)
        if not settings.virtual_keys:
            log.warning("%s: true and no master key: anyone who can reach the port may use the gateway, "
                        "its admin routes included", ALLOW_OPEN)
        return
    if len(master.get_secret_value().strip()) < MIN_MASTER_KEY_LENGTH:
        raise ConfigError(
            f"too short: use at least {MIN_MASTER_KEY_LENGTH} characters (a random one, e.g. "
            "`python -c 'import secrets; print(\"sk-\" + secrets.token_urlsafe(24))'`)",
            MASTER_KEY,
        )


def _check_virtual_keys(config: GatewayConfig) -> None:
    """Every virtual key as hard to guess as the master key, and each one a single identity.

    A key written in clear is held to :data:`MIN_MASTER_KEY_LENGTH` (a ``key_sha256`` cannot
    be measured: its owner chose it). One key listed twice, or equal to the master key, would
    leave it to the order of the list which tenant a request belongs to (or make a tenant's
    key an admin's): refused, naming both places.
    """
    settings = config.general_settings
    master = settings.master_key
    seen: dict[str, str] = {}
    if master is not None:
        seen[hashlib.sha256(master.get_secret_value().encode()).hexdigest()] = MASTER_KEY
    for i, virtual in enumerate(settings.virtual_keys):
        where = f"general_settings.virtual_keys[{i}]"
        if virtual.key is not None and len(virtual.key.get_secret_value().strip()) < MIN_MASTER_KEY_LENGTH:
            raise ConfigError(f"too short: a virtual key needs at least {MIN_MASTER_KEY_LENGTH} characters, "
                              "as the master key does (or make one with /key/generate)", f"{where}.key")
        field = f"{where}.{'key' if virtual.key is not None else 'key_sha256'}"
        if virtual.digest in seen:
            raise ConfigError(f"the same key as {seen[virtual.digest]}: each key must be one identity "
                              "(one tenant, not the master key)", field)
        seen[virtual.digest] = field
