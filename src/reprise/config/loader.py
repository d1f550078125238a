"""Reading ``config.yaml``: YAML, then ``os.environ/NAME`` references, then validation.

Every problem becomes one :class:`~reprise.errors.ConfigError` that lists all of
them, one ``dotted.yaml.path: message`` per line; ``ConfigError.path`` is the
first one's. Messages never quote the offending values, which may be secrets.

An ``os.environ/NAME`` value is replaced by the variable, as LiteLLM does
(https://docs.litellm.ai/docs/proxy/configs). A variable that is not set is an
error, except under a key Reprise ignores: a LiteLLM config may name variables,
such as ``general_settings.database_url``, that only LiteLLM needs.

A secret (every ``SecretStr`` setting: ``master_key``, a virtual key's ``key``, a
provider's ``api_key``, a store's password...) that is empty or only whitespace is an
error, whether written ``""`` or read from a variable that is set but empty: an empty
``master_key`` would otherwise turn authentication off, and an empty provider key can
never work. A setting that needs no secret is left out instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from reprise.config.models import GatewayConfig, describe_cache_type, find_extras
from reprise.errors import ConfigError

ENV_PREFIX = "os.environ/"

#: (dotted YAML path, message)
Problem = tuple[str, str]


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read, resolve and validate the config file at ``path``."""
    return parse_config(read_yaml(path))


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Resolve and validate an already-parsed config; ``environ`` defaults to ``os.environ``."""
    config, _ = _parse(data, os.environ if environ is None else environ)
    return config


def check_config(path: str | os.PathLike[str]) -> list[str]:
    """Human-readable warnings for a valid config (raises ConfigError for an invalid one).

    Meant for ``reprise config check``: keys Reprise ignores (with a hint when one
    looks like a misspelt key that it reads), unset variables under those keys, and
    settings that silently do nothing.
    """
    config, unset = _parse(read_yaml(path), os.environ)
    warnings = []
    for key, owner in find_extras(config):
        name = key.rpartition(".")[2]
        close = [field for field in owner.model_fields if _is_typo(name, field)]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warnings.append(f"{key}: not used by Reprise (ignored){hint}")
    warnings += [f"{where}: {message} (the key is ignored)" for where, message in unset]
    if config.litellm_settings.cache_params is not None and not config.cache_enabled:
        warnings.append(
            "litellm_settings.cache: false, so cache_params has no effect; set cache: true"
        )
    if not config.model_list:
        warnings.append("model_list: empty, so every request will be answered 404")
    return warnings


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or a ConfigError saying why not."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {os.fspath(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        raise ConfigError(f"{os.fspath(path)} must be a YAML mapping; it is {kind}")
    return data


def resolve_env(value: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[Problem]]:
    """``value`` with every ``os.environ/NAME`` string replaced by the variable.

    Unset variables are left as written and returned as problems at their paths.
    """
    if isinstance(value, dict):
        resolved: dict[Any, Any] = {}
        unset: list[Problem] = []
        for key, item in value.items():
            resolved[key], found = resolve_env(item, environ, _join(path, key))
            unset += found
        return resolved, unset
    if isinstance(value, list):
        pairs = [resolve_env(item, environ, f"{path}[{i}]") for i, item in enumerate(value)]
        return [item for item, _ in pairs], [p for _, found in pairs for p in found]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name and name in environ:
            return environ[name], []
        return value, [(path, f"environment variable {name!r} is not set")]
    return value, []


#: LiteLLM keys that restrict who may call or how much, which Reprise does not enforce: set (and
#: not false or empty) they stop start-up instead of being ignored with a warning. Found from
#: outside: a file with ``allowed_ips`` or ``enforce_user_param`` kept its look of safety while
#: the gateway served every caller.
NOT_ENFORCED: dict[str, str] = {
    "general_settings.allowed_ips": "LiteLLM's IP allow-list is not enforced by Reprise: remove it and "
    "allow clients in front of Reprise (a firewall or reverse proxy)",
    "general_settings.enforce_user_param": "requests without 'user' are not refused by Reprise: remove it",
    "general_settings.allowed_routes": "route restrictions are not enforced by Reprise: remove them "
    "(Reprise serves only its documented routes)",
    "general_settings.admin_only_routes": "route restrictions are not enforced by Reprise: remove them "
    "(admin routes always need the master key)",
    "general_settings.enable_jwt_auth": "JWT auth is not supported: use the master key and virtual keys",
    "general_settings.custom_auth": "custom auth hooks are not supported: use the master key and virtual keys",
    "litellm_settings.max_budget": "spend budgets are not enforced by Reprise: remove it",
    "litellm_settings.max_end_user_budget": "spend budgets are not enforced by Reprise: remove it",
    "litellm_settings.max_internal_user_budget": "spend budgets are not enforced by Reprise: remove it",
}


def _parse(data: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[GatewayConfig, list[Problem]]:
    """The config and the unset variables found under ignored keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config must be a mapping, not {type(data).__name__}")
    resolved, unset = resolve_env(dict(data), environ)
    try:
        config = GatewayConfig.model_validate(resolved)
    except ValidationError as exc:
        at_unset = {where for where, _ in unset}
        problems = [p for p in _problems(exc, resolved) if p[0] not in at_unset]
        raise _config_error(unset + problems) from None
    ignored = config.ignored_keys
    used = [p for p in unset if not any(_is_under(p[0], key) for key in ignored)]
    blank = [(path, _blank_message(path, data)) for path in find_blank_secrets(config, resolved)]
    guards = [(key, NOT_ENFORCED[key]) for key in ignored if key in NOT_ENFORCED and _value_at(resolved, key)]
    if used or blank or guards:
        raise _config_error(used + blank + guards)
    return config, [p for p in unset if p not in used]


def find_blank_secrets(model: BaseModel, data: Any, loc: tuple[int | str, ...] = ()) -> list[str]:
    """The YAML paths of every secret in ``model`` that is empty or only whitespace."""
    found = []
    for name in type(model).model_fields:
        found += _blank_in(getattr(model, name), data, (*loc, name))
    return found


def _blank_in(value: Any, data: Any, loc: tuple[int | str, ...]) -> list[str]:
    if isinstance(value, SecretStr):
        return [_yaml_path(loc, data)] if not value.get_secret_value().strip() else []
    if isinstance(value, BaseModel):
        return find_blank_secrets(value, data, loc)
    if isinstance(value, list):
        return [path for i, item in enumerate(value) for path in _blank_in(item, data, (*loc, i))]
    return []


def _blank_message(path: str, data: Mapping[str, Any]) -> str:
    written = _value_at(data, path)
    source = f"environment variable {written[len(ENV_PREFIX):]!r}" if _is_env_ref(written) else "the value"
    return f"{source} is empty or only whitespace; a secret cannot be blank (remove the setting if none is needed)"


def _value_at(data: Any, path: str) -> Any:
    node = data
    for part in path.replace("[", ".[").split("."):
        if part.startswith("[") and isinstance(node, list):
            index = int(part[1:-1])
            node = node[index] if index < len(node) else None
        else:
            node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _is_env_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(ENV_PREFIX)


def _problems(exc: ValidationError, data: Any) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _yaml_path(error["loc"], data)
        if error["type"] == "union_tag_invalid":  # only cache_params is a tagged union
            ctx = error.get("ctx", {})
            problems.append((f"{path}.type", describe_cache_type(str(ctx.get("tag")))))
        elif error["type"] == "missing":
            key = path.rpartition(".")[2]
            problems.append((path, MISSING_HINTS.get(key, f"required but missing: add {key}")))
        else:
            problems.append((path or "(top level)", error["msg"]))
    return problems


MISSING_HINTS = {
    "litellm_params": "required but missing: every model_list entry says where its model is served, "
                      "e.g. litellm_params: {model: openai/gpt-4o} (LiteLLM's router requires it too)",
    "model": "required but missing: the provider and model, e.g. model: openai/gpt-4o",
}
"""What to write for a required key that is missing, by key name."""


def _yaml_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Pydantic's ``loc`` as a YAML path, walking ``data`` alongside it.

    A tagged union puts its tag into ``loc`` (``cache_params.local.ttl``); a part
    that names no key of the input, and is not the last, is such a tag and is dropped.
    """
    path, node = "", data
    for i, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if -len(node) <= part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and i < len(loc) - 1:
            continue
        path = _join(path, part)
        node = node.get(part) if isinstance(node, dict) else None
    return path


def _config_error(problems: list[Problem]) -> ConfigError:
    (first_path, first_message), rest = problems[0], problems[1:]
    return ConfigError(first_message + "".join(f"\n{p}: {m}" for p, m in rest), first_path)


def _is_typo(word: str, field: str) -> bool:
    """One edit apart (insert, delete, substitute or swap two neighbours); a word of
    three letters or more. Looser matching flags real LiteLLM keys (``base_model``)."""
    if len(word) < 3 or abs(len(word) - len(field)) > 1 or word == field:
        return False
    if len(word) == len(field):
        diff = [i for i, (a, b) in enumerate(zip(word, field, strict=True)) if a != b]
        swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == field[diff[1]]
        return len(diff) == 1 or (swapped and word[diff[1]] == field[diff[0]])
    short, long = sorted((word, field), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _is_under(path: str, key: str) -> bool:
    return path == key or path.startswith((f"{key}.", f"{key}["))


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
