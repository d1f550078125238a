"""Loading LiteLLM's config.yaml: what Reprise reads is validated with YAML paths in
the errors; what it does not read is accepted and listed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from reprise.backends.registry import PLANNED
from reprise.config import (
    DiskCacheParams,
    GatewayConfig,
    LocalCacheParams,
    check_config,
    load_config,
    parse_config,
)
from reprise.config.models import CACHE_PARAM_MODELS
from reprise.errors import ConfigError

SAMPLE = """\
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: https://api.openai.com/v1,
                     api_key: os.environ/OPENAI_API_KEY, timeout: 30, stream_timeout: 60}
    model_info: {input_cost_per_token: 2.5e-06, output_cost_per_token: 1.0e-05}
  - model_name: demo
    litellm_params: {model: openai/demo, mock_response: "Hello!"}
general_settings: {master_key: sk-1234, max_request_size_mb: 8}
litellm_settings:
  cache: true
  request_timeout: 600
  cache_params: {type: local, ttl: 600, namespace: null, mode: default_on,
                 supported_call_types: [acompletion, aembedding]}
"""

BASE: dict[str, Any] = {
    "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
    "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
}


def parse(environ: dict[str, str] | None = None, **changes: Any) -> GatewayConfig:
    """BASE with top-level sections replaced by ``changes``."""
    data = copy.deepcopy(BASE)
    data.update(changes)
    return parse_config(data, environ or {})


def cache_params(**params: Any) -> GatewayConfig:
    return parse(litellm_settings={"cache": True, "cache_params": params})


def error_of(call: Any, *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return info.value


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    path = tmp_path / "config.yaml"
    path.write_text(SAMPLE)
    return path


# --- the sample ---------------------------------------------------------------------


def test_sample_parses(sample: Path) -> None:
    config = load_config(sample)
    gpt, demo = config.model_list
    assert gpt.model_name == "gpt-4o"
    assert gpt.litellm_params.api_key is not None
    assert gpt.litellm_params.api_key.get_secret_value() == "sk-from-env"
    assert gpt.litellm_params.timeout == 30 and gpt.litellm_params.stream_timeout == 60
    assert gpt.model_info.input_cost_per_token == 2.5e-06
    assert demo.litellm_params.mock_response == "Hello!"
    assert demo.model_info.input_cost_per_token is None
    master_key = config.general_settings.master_key
    assert master_key is not None and master_key.get_secret_value() == "sk-1234"
    assert config.general_settings.max_request_size_mb == 8
    assert config.litellm_settings.request_timeout == 600
    assert config.cache_enabled
    params = config.cache_params
    assert isinstance(params, LocalCacheParams)
    assert (params.ttl, params.namespace, params.mode) == (600, None, "default_on")
    assert params.supported_call_types == ["acompletion", "aembedding"]
    assert (params.max_entries, params.max_bytes) == (None, 256 * 2**20)  # bytes bound the default (issue 15)
    assert config.ignored_keys == []
    assert check_config(sample) == []


def test_provider_and_upstream_model() -> None:
    config = parse(
        model_list=[
            {"model_name": "a", "litellm_params": {"model": "anthropic/claude-3/beta"}},
            {"model_name": "b", "litellm_params": {"model": "gpt-4o"}},
        ]
    )
    a, b = (entry.litellm_params for entry in config.model_list)
    assert (a.provider, a.upstream_model) == ("anthropic", "claude-3/beta")
    assert (b.provider, b.upstream_model) == ("openai", "gpt-4o")


def test_duplicate_model_names_are_deployments_of_one_model() -> None:
    entries = [
        {"model_name": "m", "litellm_params": {"model": "openai/one"}},
        {"model_name": "other", "litellm_params": {"model": "openai/x"}},
        {"model_name": "m", "litellm_params": {"model": "openai/two"}},
    ]
    config = parse(model_list=entries)
    assert [d.litellm_params.model for d in config.deployments("m")] == ["openai/one", "openai/two"]
    assert config.deployments("absent") == []
    assert config.model_names() == ["m", "other"]


def test_defaults_and_empty_config() -> None:
    config = parse_config({}, {})
    assert config.model_list == [] and config.model_names() == []
    assert not config.cache_enabled and config.cache_params is None
    assert config.general_settings.master_key is None
    assert config.general_settings.max_request_size_mb == 8
    assert config.litellm_settings.request_timeout == 600


def test_null_sections_read_as_empty() -> None:
    config = parse_config({"model_list": None, "general_settings": None}, {})
    assert config.model_list == [] and config.general_settings.master_key is None


def test_cache_true_without_params_means_local_defaults() -> None:
    config = parse(litellm_settings={"cache": True})
    params = config.cache_params
    assert isinstance(params, LocalCacheParams)
    assert params.ttl is None and params.mode == "default_on"
    assert params.supported_call_types == ["acompletion", "completion", "aembedding", "embedding",
                                           "atext_completion", "text_completion", "aresponses", "responses"]


def test_cache_params_without_cache_true_is_off() -> None:
    config = parse(litellm_settings={"cache_params": {"type": "disk"}})
    assert not config.cache_enabled
    assert isinstance(config.cache_params, DiskCacheParams)


def test_missing_type_defaults_to_local() -> None:
    assert isinstance(cache_params(ttl=5).cache_params, LocalCacheParams)
    assert isinstance(cache_params(type=None).cache_params, LocalCacheParams)


def test_disk_params() -> None:
    params = cache_params(type="disk", disk_cache_dir="/tmp/c").cache_params
    assert isinstance(params, DiskCacheParams)
    assert (params.disk_cache_dir, params.max_bytes) == ("/tmp/c", 2**30)


# --- os.environ/NAME ----------------------------------------------------------------


def test_env_resolved_anywhere_including_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPRISE_T_MODEL", "openai/from-env")
    monkeypatch.setenv("REPRISE_T_CALL", "embedding")
    monkeypatch.setenv("REPRISE_T_TTL", "42.5")
    data = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "os.environ/REPRISE_T_MODEL"}}
        ],
        "litellm_settings": {
            "cache": True,
            "cache_params": {
                "ttl": "os.environ/REPRISE_T_TTL",
                "supported_call_types": ["completion", "os.environ/REPRISE_T_CALL"],
            },
        },
    }
    config = parse_config(data)
    assert config.model_list[0].litellm_params.model == "openai/from-env"
    params = config.cache_params
    assert params is not None and params.ttl == 42.5
    assert params.supported_call_types == ["completion", "embedding"]


def test_missing_env_var_names_path_and_variable() -> None:
    data = {"model_list": [{"model_name": "m", "litellm_params": {"model": "x", "api_key": "os.environ/NOPE"}}]}
    error = error_of(parse_config, data, {})
    assert error.path == "model_list[0].litellm_params.api_key"
    assert "NOPE" in str(error) and "not set" in str(error)


def test_missing_env_var_in_numeric_field_reports_the_variable_only() -> None:
    error = error_of(cache_params, ttl="os.environ/NOPE_TTL")
    assert str(error) == (
        "litellm_settings.cache_params.ttl: environment variable 'NOPE_TTL' is not set"
    )


def test_missing_env_var_under_ignored_key_is_a_warning(tmp_path: Path) -> None:
    data = parse_config({"general_settings": {"database_url": "os.environ/NOPE_DB"}}, {})
    assert data.ignored_keys == ["general_settings.database_url"]
    path = tmp_path / "c.yaml"
    path.write_text("general_settings: {database_url: os.environ/REPRISE_T_NOPE_DB}\n")
    warnings = check_config(path)
    assert any("REPRISE_T_NOPE_DB" in w and w.startswith("general_settings.database_url") for w in warnings)


# --- errors name the YAML path ------------------------------------------------------


def test_wrong_ttl_type() -> None:
    error = error_of(cache_params, type="local", ttl="abc")
    assert error.path == "litellm_settings.cache_params.ttl"
    assert str(error).startswith("litellm_settings.cache_params.ttl: Input should be a valid number")


def test_ttl_path_without_explicit_type() -> None:
    assert error_of(cache_params, ttl=-1).path == "litellm_settings.cache_params.ttl"


def test_missing_model() -> None:
    error = error_of(parse, model_list=[{"model_name": "m", "litellm_params": {"api_base": "x"}}])
    assert str(error) == ("model_list[0].litellm_params.model: required but missing: the provider and model, "
                          "e.g. model: openai/gpt-4o")


def test_missing_litellm_params_says_what_to_write() -> None:
    error = error_of(parse, model_list=[{"model_name": "m"}])
    assert error.path == "model_list[0].litellm_params"
    assert "e.g. litellm_params: {model: openai/gpt-4o}" in str(error)


def test_bad_mode() -> None:
    error = error_of(cache_params, mode="sometimes")
    assert error.path == "litellm_settings.cache_params.mode"
    assert "default_on" in str(error) and "default_off" in str(error)


def test_bad_call_type() -> None:
    error = error_of(cache_params, supported_call_types=["completion", "chat"])
    assert error.path == "litellm_settings.cache_params.supported_call_types[1]"


def test_all_errors_are_listed_one_per_line() -> None:
    data = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "x", "timeout": 0}}],
        "general_settings": {"master_key": 1234, "max_request_size_mb": "big"},
        "litellm_settings": {"cache": "maybe"},
    }
    error = error_of(parse_config, data, {})
    lines = str(error).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "model_list[0].litellm_params.timeout",
        "general_settings.master_key",
        "general_settings.max_request_size_mb",
        "litellm_settings.cache",
    ]
    assert error.path == "model_list[0].litellm_params.timeout"


def test_errors_do_not_quote_values() -> None:
    error = error_of(parse, general_settings={"master_key": ["sk-secret-value"]})
    assert "sk-secret-value" not in str(error)


@pytest.mark.parametrize("namespace", ["team-a", "a.b_c-1", "x" * 128])
def test_valid_namespace(namespace: str) -> None:
    params = cache_params(namespace=namespace).cache_params
    assert params is not None and params.namespace == namespace


@pytest.mark.parametrize("namespace", ["", "has space", "a/b", "x" * 129, "ünï"])
def test_invalid_namespace(namespace: str) -> None:
    error = error_of(cache_params, namespace=namespace)
    assert error.path == "litellm_settings.cache_params.namespace"
    assert "1-128 characters" in str(error)


def test_every_litellm_cache_type_is_implemented() -> None:
    # LiteLLM's cache_params.type names (docs.litellm.ai/docs/proxy/caching): none is left PLANNED.
    litellm_types = {"local", "disk", "redis", "redis-semantic", "qdrant-semantic", "s3", "gcs", "azure-blob"}
    assert not PLANNED
    assert litellm_types <= set(CACHE_PARAM_MODELS)


def test_unknown_type_lists_valid_types() -> None:
    error = error_of(cache_params, type="memcached")
    assert str(error).startswith(
        "litellm_settings.cache_params.type: "
        "unknown cache type 'memcached'; expected one of: 'azure-blob', 'disk', 'gcs', 'local'"
    )


# --- ignored keys -------------------------------------------------------------------


def test_unknown_keys_are_collected_with_paths() -> None:
    data = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {"model": "x", "rpm": 10, "extra_body": {"a": 1}},
                "model_info": {"id": "abc", "input_cost_per_token": 0.1},
            }
        ],
        "general_settings": {"database_url": "postgres://u:p@h/db"},
        "litellm_settings": {
            "cache": True,
            "success_callback": ["langfuse"],
            "cache_params": {"type": "local", "host": "h", "port": 6379},
        },
        "router_settings": {"routing_strategy": "simple-shuffle"},
        "environment_variables": {"A": "b"},
    }
    config = parse_config(data, {})
    assert config.ignored_keys == [
        "model_list[0].litellm_params.rpm",
        "model_list[0].litellm_params.extra_body",
        "model_list[0].model_info.id",
        "general_settings.database_url",
        "litellm_settings.cache_params.host",
        "litellm_settings.cache_params.port",
        "litellm_settings.success_callback",
        "router_settings.routing_strategy",
        "environment_variables",
    ]
    assert config.model_list[0].litellm_params.extras == {"rpm": 10, "extra_body": {"a": 1}}


def test_keys_we_read_are_still_strict_next_to_unknown_ones() -> None:
    error = error_of(parse, general_settings={"database_url": "x", "max_request_size_mb": 0})
    assert error.path == "general_settings.max_request_size_mb"


def test_check_config_warns_and_suggests(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_list: []\n"
        "router_settings: {num_retries: 2}\n"
        "litellm_settings: {cache_params: {type: local, tll: 60}}\n"
    )
    assert check_config(path) == [
        "litellm_settings.cache_params.tll: not used by Reprise (ignored); did you mean 'ttl'?",
        "router_settings.num_retries: not used by Reprise (ignored)",
        "litellm_settings.cache: false, so cache_params has no effect; set cache: true",
        "model_list: empty, so every request will be answered 404",
    ]


# --- secrets ------------------------------------------------------------------------


def test_secrets_not_in_repr(sample: Path) -> None:
    config = load_config(sample)
    assert "sk-from-env" not in repr(config) and "sk-1234" not in repr(config)
    assert "sk-1234" not in str(config)


def test_undeclared_keys_not_in_repr() -> None:
    config = parse(general_settings={"database_url": "postgres://u:hunter2@h/db"})
    assert "hunter2" not in repr(config)
    assert config.general_settings.extras == {"database_url": "postgres://u:hunter2@h/db"}


# --- the file -----------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    error = error_of(load_config, tmp_path / "absent.yaml")
    assert "not found" in str(error) and "absent.yaml" in str(error)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model_list: [\n  - {model_name: x\n")
    assert "not valid YAML" in str(error_of(load_config, path))


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert "must be a YAML mapping" in str(error_of(load_config, path))


def test_parse_config_rejects_non_mapping() -> None:
    assert "mapping" in str(error_of(parse_config, ["a"], {}))


def test_config_is_frozen() -> None:
    config = parse()
    with pytest.raises(ValueError):
        config.litellm_settings.cache = False


def test_semantic_budget_and_opt_in_stages() -> None:
    """Issue 13: the wrong-answer budget defaults to 2% and is a rate; guards and verifier are opt-in."""
    params = cache_params(type="local-semantic").cache_params
    assert params is not None
    assert params.semantic_max_wrong_rate == 0.02  # type: ignore[union-attr]
    assert params.guards_on is False and params.semantic_cache_verifier_model is None  # type: ignore[union-attr]
    chosen = cache_params(type="qdrant-semantic", semantic_max_wrong_rate=0.05, semantic_cache_guards=True,
                          qdrant_path=":memory:")
    litellm_style = cache_params(type="local-semantic", similarity_threshold=0.75).cache_params
    assert litellm_style.guards_on is True  # type: ignore[union-attr]  # an explicit threshold keeps the guards
    off = cache_params(type="local-semantic", similarity_threshold=0.75, semantic_cache_guards=False).cache_params
    assert off.guards_on is False  # type: ignore[union-attr]
    assert chosen.cache_params.semantic_max_wrong_rate == 0.05  # type: ignore[union-attr]
    for bad in (0, 1, 1.5, -0.1, "lots"):
        error = error_of(cache_params, type="local-semantic", semantic_max_wrong_rate=bad)
        assert "litellm_settings.cache_params.semantic_max_wrong_rate" in str(error), bad


def test_a_missing_cache_type_is_redis_when_redis_is_named_as_litellms_proxy_reads_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found from outside: LiteLLM's proxy reads ``cache: true`` (no type) as Redis at REDIS_HOST;
    Reprise read it as in-process, so replicas meant to share one Redis did not."""
    for name in ("REDIS_HOST", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    alone = GatewayConfig.model_validate({"litellm_settings": {"cache": True}})
    assert alone.cache_params is not None and alone.cache_params.type == "local"
    assert "LiteLLM's proxy would use Redis" in (alone.litellm_settings.cache_type_note or "")
    keyed = GatewayConfig.model_validate(
        {"litellm_settings": {"cache": True, "cache_params": {"host": "r", "port": 6380}}})
    assert keyed.cache_params is not None and keyed.cache_params.type == "redis"
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    from_env = GatewayConfig.model_validate({"litellm_settings": {"cache": True}})
    assert from_env.cache_params is not None and from_env.cache_params.type == "redis"
    typed = GatewayConfig.model_validate({"litellm_settings": {"cache": True, "cache_params": {"type": "local"}}})
    assert typed.cache_params is not None and typed.cache_params.type == "local"
    assert typed.litellm_settings.cache_type_note is None


def test_qdrant_reads_litellms_environment_and_never_falls_back_to_memory_silently(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QDRANT_URL", "QDRANT_API_BASE", "QDRANT_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    error = error_of(cache_params, type="qdrant-semantic")
    assert "QDRANT_URL" in str(error) and "qdrant_path" in str(error)
    monkeypatch.setenv("QDRANT_API_BASE", "http://qdrant:6333")
    monkeypatch.setenv("QDRANT_API_KEY", "k")
    params = cache_params(type="qdrant-semantic").cache_params
    assert params.qdrant_api_base == "http://qdrant:6333"  # type: ignore[union-attr]
    assert params.qdrant_api_key.get_secret_value() == "k"  # type: ignore[union-attr]
    monkeypatch.setenv("QDRANT_URL", "http://first:6333")  # LiteLLM reads it first
    assert cache_params(type="qdrant-semantic").cache_params.qdrant_api_base == "http://first:6333"  # type: ignore[union-attr]
    own = cache_params(type="qdrant-semantic", qdrant_api_base="http://own:6333").cache_params
    assert own.qdrant_api_base == "http://own:6333"  # type: ignore[union-attr]


def test_local_entries_expire_as_litellms_in_memory_cache() -> None:
    """Found from outside: ``default_in_memory_ttl`` was ignored and ``local`` entries never
    expired, where LiteLLM's in-memory cache keeps them 600 s unless told otherwise."""
    assert cache_params(type="local").cache_params.default_ttl == 600  # type: ignore[union-attr]
    assert cache_params(type="local", default_in_memory_ttl=2).cache_params.default_ttl == 2  # type: ignore[union-attr]
    assert cache_params(type="local", default_in_memory_ttl=2, ttl=30).cache_params.default_ttl == 30  # type: ignore[union-attr]
    assert "litellm_settings.cache_params.default_in_memory_ttl" not in cache_params(
        type="local", default_in_memory_ttl=2).ignored_keys


@pytest.mark.parametrize(("section", "key", "value"), [
    ("general_settings", "allowed_ips", ["10.9.9.9"]),
    ("general_settings", "enforce_user_param", True),
    ("general_settings", "enable_jwt_auth", True),
    ("litellm_settings", "max_budget", 10),
])
def test_litellm_keys_that_restrict_callers_are_refused_not_ignored(section: str, key: str, value: Any) -> None:
    """Found from outside: ignored with a warning, they kept the file's look of safety while
    every caller was served."""
    error = error_of(parse, **{section: {key: value}})
    assert str(error).startswith(f"{section}.{key}: ")
    parse(**{section: {key: False}})  # off: nothing to enforce


def test_end_user_semantic_scope_is_refused() -> None:
    """Found from outside: with only semantic hits kept per ``user``, the exact cache (which does
    not key ``user``) still served one end user's answer to another's identical prompt."""
    error = error_of(cache_params, type="local-semantic", semantic_cache_scope="end_user")
    assert "semantic_cache_scope" in str(error) and "namespace" in str(error)
    assert cache_params(type="local-semantic", semantic_cache_scope="key").cache_params is not None
