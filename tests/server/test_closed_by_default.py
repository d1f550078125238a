"""An empty secret stops the gateway instead of switching authentication off.

Found: ``master_key: os.environ/MK`` with ``MK=`` (set, but empty) served everyone without a
key, admin routes included, and ``reprise config check`` said ok. Every secret of the config
(``SecretStr`` settings) is held to the same rule, by the validation ``serve`` and
``config check`` share.
"""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reprise.config import parse_config
from reprise.errors import ConfigError
from tests.server.conftest import free_port

BASE: dict[str, Any] = {
    "model_list": [{"model_name": "demo", "litellm_params": {"model": "openai/demo", "mock_response": "hi"}}],
    "general_settings": {"master_key": "sk-master-key-for-tests"},
}


def config_error(data: dict[str, Any], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ or {})
    return info.value


def with_general(**settings: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["general_settings"].update(settings)
    return data


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_blank_master_key_is_a_config_error(value: str) -> None:
    error = config_error(with_general(master_key=value))
    assert error.path == "general_settings.master_key"
    assert "empty" in str(error)


@pytest.mark.parametrize("value", ["", "   "])
def test_master_key_from_an_empty_variable_names_the_variable(value: str) -> None:
    error = config_error(with_general(master_key="os.environ/MK"), {"MK": value})
    assert error.path == "general_settings.master_key"
    assert "'MK'" in str(error)


def test_blank_virtual_key_is_a_config_error() -> None:
    keys = [{"key": "sk-fine", "tenant": "a"}, {"key": "os.environ/TEAM_B", "tenant": "b"}]
    error = config_error(with_general(virtual_keys=keys), {"TEAM_B": ""})
    assert error.path == "general_settings.virtual_keys[1].key"


def test_blank_provider_key_is_a_config_error() -> None:
    """An empty provider key can never work; a provider that needs none is configured without ``api_key``."""
    data = copy.deepcopy(BASE)
    data["model_list"][0]["litellm_params"]["api_key"] = "os.environ/OPENAI_API_KEY"
    error = config_error(data, {"OPENAI_API_KEY": ""})
    assert error.path == "model_list[0].litellm_params.api_key"
    assert "'OPENAI_API_KEY'" in str(error)


def test_blank_store_password_is_a_config_error() -> None:
    data = copy.deepcopy(BASE)
    data["litellm_settings"] = {"cache": True, "cache_params": {"type": "redis", "password": " "}}
    assert config_error(data).path == "litellm_settings.cache_params.password"


def test_every_blank_secret_is_listed_without_its_value() -> None:
    data = with_general(master_key="os.environ/MK", virtual_keys=[{"key": " \t ", "tenant": "a"}])
    error = config_error(data, {"MK": "  "})
    lines = str(error).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("general_settings.master_key:")
    assert lines[1].startswith("general_settings.virtual_keys[0].key:")
    assert " \t " not in str(error)


def test_set_secrets_and_absent_ones_are_fine() -> None:
    config = parse_config(with_general(master_key="os.environ/MK"), {"MK": "sk-x"})
    assert config.general_settings.master_key is not None
    data = copy.deepcopy(BASE)
    del data["general_settings"]["master_key"]
    assert parse_config(data, {}).general_settings.master_key is None


# --- through the command line ---------------------------------------------------------------


def run_reprise(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
    """Run ``reprise`` to its end: (exit status, output). A server still running at ``timeout`` fails the test."""
    proc = subprocess.Popen([sys.executable, "-m", "reprise.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"reprise {args[0]} was still running after {timeout}s:\n{out.decode(errors='replace')}")
    return proc.returncode, out.decode(errors="replace")


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("value", ["", "  "])
def test_serve_refuses_to_start_with_an_empty_master_key(tmp_path: Path, value: str) -> None:
    path = write_config(tmp_path, with_general(master_key="os.environ/REPRISE_TEST_MK"))
    port = free_port()
    status, output = run_reprise(["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                                  "--workers", "2"], env={"REPRISE_TEST_MK": value}, timeout=20)
    assert status == 2, output
    assert "general_settings.master_key" in output and "REPRISE_TEST_MK" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)


def test_config_check_fails_on_an_empty_master_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, with_general(master_key="os.environ/REPRISE_TEST_MK"))
    status, output = run_reprise(["config", "check", "--config", str(path)], env={"REPRISE_TEST_MK": ""})
    assert status == 2, output
    assert "general_settings.master_key" in output
    assert "ok:" not in output
    status, output = run_reprise(["config", "check", "--config", str(path)],
                                 env={"REPRISE_TEST_MK": "sk-set-but-long-enough"})
    assert status == 0, output


# --- no master key, or a short one (issue 12 item 2) ----------------------------------------------
# Found: a config without ``master_key`` (and an empty or broken keys file) served everyone,
# admin routes included; ``sk-1234`` from LiteLLM's docs was accepted as a master key.


def without_master(**settings: Any) -> dict[str, Any]:
    data = with_general(**settings)
    del data["general_settings"]["master_key"]
    return data


@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize("case", ["missing", "short"])
def test_serve_and_check_refuse_an_unset_or_short_master_key(tmp_path: Path, command: str, case: str) -> None:
    data = without_master() if case == "missing" else with_general(master_key="sk-1234")
    path = write_config(tmp_path, data)
    port = free_port()
    args = (["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)] if command == "serve"
            else ["config", "check", "--config", str(path)])
    status, output = run_reprise(args, timeout=20)
    assert status == 2, output
    assert "general_settings.master_key" in output
    assert ("allow_unauthenticated" in output) if case == "missing" else ("at least 16 characters" in output)
    assert "sk-1234" not in output  # the message never quotes a secret
    assert "ok:" not in output


def test_serving_open_needs_allow_unauthenticated_and_warns(tmp_path: Path) -> None:
    path = write_config(tmp_path, without_master(allow_unauthenticated=True))
    status, output = run_reprise(["config", "check", "--config", str(path)])
    assert status == 0, output
    assert "allow_unauthenticated" in output  # the same warning serve logs
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reprise.cli.main", "serve", "--config", str(path),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(200):
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("the gateway did not start")
        assert reply.status_code == 200, reply.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert "allow_unauthenticated: true and no master key" in out.decode(errors="replace")


def test_a_gateway_without_keys_is_closed_unless_allowed() -> None:
    """The library's own ``Gateway`` (no serve-time check) lets nobody in without a key or the setting."""
    from reprise.errors import AuthError
    from reprise.server.gateway import Gateway

    closed = Gateway.from_config(parse_config(without_master(), {}))
    with pytest.raises(AuthError):
        closed.check_auth([])
    opened = Gateway.from_config(parse_config(without_master(allow_unauthenticated=True), {}))
    assert opened.check_auth([]).key_id == "none"


def test_an_open_gateway_still_refuses_a_repeated_credential_header() -> None:
    """The repeat is refused before the open shortcut: a proxy in front may act on either copy."""
    from reprise.errors import RequestError
    from reprise.server.gateway import Gateway

    opened = Gateway.from_config(parse_config(without_master(allow_unauthenticated=True), {}))
    with pytest.raises(RequestError) as refused:
        opened.check_auth([(b"api-key", b"a"), (b"api-key", b"b")])
    assert (refused.value.code, refused.value.param) == ("duplicate_credentials", "api-key")


# --- virtual keys held to the master key's rules (found from outside) -------------------------------
# ``key: "x"`` served as a tenant; one key listed under two tenants started silently (requests went to
# the last, the first vanished from /key/list); a virtual key equal to the master key was accepted.

LONG_A, LONG_B = "sk-tenant-a-0123456789", "sk-tenant-b-0123456789"


@pytest.mark.parametrize(("keys", "path", "said"), [
    ([{"key": "x", "tenant": "a"}], "general_settings.virtual_keys[0].key", "at least 16 characters"),
    ([{"key": LONG_A, "tenant": "a"}, {"key": "sk-short", "tenant": "b"}],
     "general_settings.virtual_keys[1].key", "at least 16 characters"),
    ([{"key": LONG_A, "tenant": "t1"}, {"key": LONG_A, "tenant": "t2"}],
     "general_settings.virtual_keys[1].key", "the same key as general_settings.virtual_keys[0].key"),
    ([{"key": LONG_A, "tenant": "t1"}, {"key_sha256": hashlib.sha256(LONG_A.encode()).hexdigest(), "tenant": "t2"}],
     "general_settings.virtual_keys[1].key_sha256", "the same key as general_settings.virtual_keys[0].key"),
    ([{"key": "os.environ/REPRISE_TEST_MK", "tenant": "t0"}],
     "general_settings.virtual_keys[0].key", "the same key as general_settings.master_key"),
], ids=["one-character", "short-second", "listed-twice", "twice-as-hash", "the-master-key"])
def test_serve_and_check_refuse_weak_or_shared_virtual_keys(tmp_path: Path, keys: list[dict[str, Any]],
                                                            path: str, said: str) -> None:
    config = write_config(tmp_path, with_general(master_key="os.environ/REPRISE_TEST_MK", virtual_keys=keys))
    env = {"REPRISE_TEST_MK": "sk-set-but-long-enough"}
    status, output = run_reprise(["config", "check", "--config", str(config)], env=env)
    assert status == 2, output
    assert path in output and said in output, output
    assert "sk-set-but-long-enough" not in output and LONG_A not in output
    port = free_port()
    status, output = run_reprise(["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                                 env=env, timeout=20)
    assert status == 2 and path in output, output


def test_distinct_long_virtual_keys_are_fine(tmp_path: Path) -> None:
    keys = [{"key": LONG_A, "tenant": "a"}, {"key": LONG_B, "tenant": "a"},
            {"key_sha256": hashlib.sha256(b"sk-tenant-c-0123456789").hexdigest(), "tenant": "c"}]
    config = write_config(tmp_path, with_general(master_key="os.environ/REPRISE_TEST_MK", virtual_keys=keys))
    status, output = run_reprise(["config", "check", "--config", str(config)],
                                 env={"REPRISE_TEST_MK": "sk-set-but-long-enough"})
    assert status == 0, output


def test_serve_refuses_local_semantic_with_several_workers(tmp_path: Path) -> None:
    """Found from outside: each worker kept its own embedded index (read-your-writes broke on the
    other worker) and each one's log compaction replaced the file under the others (vectors lost)."""
    data = with_general()
    data["litellm_settings"] = {"cache": True, "cache_params": {
        "type": "local-semantic", "semantic_cache_dir": str(tmp_path / "sem")}}
    config = write_config(tmp_path, data)
    args = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2"]
    status, output = run_reprise(args, timeout=20)
    assert status == 2, output
    assert "litellm_settings.cache_params.type" in output and "--workers 2" in output
    assert not (tmp_path / "sem").exists()  # refused before anything was made
