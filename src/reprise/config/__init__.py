"""The gateway's configuration: LiteLLM's proxy ``config.yaml`` format.

``load_config(path)`` reads a file into a validated :class:`GatewayConfig`;
``parse_config(data)`` does the same for a mapping; ``check_config(path)`` lists
warnings for ``reprise config check``. See :mod:`reprise.config.models`.
"""

from reprise.config.loader import check_config, load_config, parse_config
from reprise.config.models import (
    BaseCacheParams,
    CacheParams,
    DiskCacheParams,
    GatewayConfig,
    GeneralSettings,
    LiteLLMParams,
    LiteLLMSettings,
    LocalCacheParams,
    ModelDeployment,
    ModelInfo,
)

__all__ = [
    "BaseCacheParams",
    "CacheParams",
    "DiskCacheParams",
    "GatewayConfig",
    "GeneralSettings",
    "LiteLLMParams",
    "LiteLLMSettings",
    "LocalCacheParams",
    "ModelDeployment",
    "ModelInfo",
    "check_config",
    "load_config",
    "parse_config",
]
