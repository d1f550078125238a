"""LiteLLM's own example proxy configs (``litellm/proxy/example_config_yaml/*.yaml`` in the
``litellm`` wheel; issue 14): each one either starts, or is refused by ``reprise config
check`` and ``reprise serve`` alike with a message naming the key.

Each is tried twice. As shipped, most have no (or a short) ``master_key``, which Reprise
refuses by design (closed by default), so that pass alone would hide everything after
it; so each is also tried *as deployed*, with a master key added, where every example
must start except the few in :data:`REFUSED_AS_DEPLOYED`, refused for a reason LiteLLM
shares or a feature Reprise does not have, each pinned to the key it names.

The files are found through an installed ``litellm`` package (located, never imported) or
the directory in ``LITELLM_EXAMPLE_CONFIGS``; without either the test is skipped, saying so.
Every ``os.environ/NAME`` a file references is set to a stand-in value (an unreachable
loopback URL for ``*_BASE`` variables): no provider is called.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reprise.server.provider_env import KEY_VARIABLES
from tests.server.conftest import GatewayProcess
from tests.server.test_sdk_and_config import run_cli


def _examples() -> list[Path]:
    where = os.environ.get("LITELLM_EXAMPLE_CONFIGS")
    if where is None:
        spec = importlib.util.find_spec("litellm")
        if spec is None or not spec.submodule_search_locations:
            return []
        where = str(Path(next(iter(spec.submodule_search_locations))) / "proxy" / "example_config_yaml")
    return sorted(Path(where).glob("*.yaml"))


EXAMPLES = _examples()
SDK_INSTALLED = importlib.util.find_spec("litellm") is not None

REFUSED_AS_DEPLOYED = {
    # an entry with no litellm_params: LiteLLM's router cannot load it either
    "langfuse_config.yaml": "model_list[0].litellm_params",
    # 'mistralai/...' names no LiteLLM provider (litellm.get_llm_provider refuses it too)
    "load_balancer.yaml": "model_list[3].litellm_params.model",
    # auto_router/ is LiteLLM's content-based router, not a provider
    "adaptive_router_example.yaml": "model_list[0].litellm_params.model",
    # a custom auth hook: not enforced by Reprise, so refused rather than ignored (config/loader.py)
    "pass_through_config.yaml": "general_settings.custom_auth",
}
"""Examples refused even with a master key, and the key each refusal names. Every other one
must start (with the ``litellm`` extra: bedrock/, cohere/, anthropic/... go through the SDK)."""

MASTER_KEY = "sk-example-master-key-0123456789"


def _set_stand_in_env(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", text)):
        monkeypatch.setenv(name, "http://127.0.0.1:9/v1" if "BASE" in name or "URL" in name else "stand-in")


def _starts_or_refused_alike(path: Path, tmp_path: Path) -> tuple[bool, str]:
    """(started, first line of the refusal); asserts check and serve agree."""
    check = run_cli("config", "check", "--config", str(path))
    if check.returncode == 0:
        gateway = GatewayProcess(yaml.safe_load(path.read_text()), tmp_path).start(timeout=60)
        try:
            assert gateway.proc is not None and gateway.proc.poll() is None
        finally:
            gateway.stop()
        return True, ""
    serve = run_cli("serve", "--config", str(path), "--port", "0")
    assert (check.returncode, serve.returncode) == (2, 2), (check.stderr, serve.stderr)
    first = check.stderr.splitlines()[0]
    assert first == serve.stderr.splitlines()[0], (check.stderr, serve.stderr)
    assert re.search(r"(model_list|general_settings|litellm_settings|router_settings)[\[.]", first), first
    return False, first


needs_examples = pytest.mark.skipif(not EXAMPLES, reason="litellm's example configs not found: pip install "
                                                         "litellm (or set LITELLM_EXAMPLE_CONFIGS to the directory)")


@needs_examples
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_starts_or_is_refused_alike(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_stand_in_env(path.read_text(), monkeypatch)
    _starts_or_refused_alike(path, tmp_path)


@needs_examples
@pytest.mark.skipif(not SDK_INSTALLED, reason="the litellm extra is not installed: pip install 'reprise[litellm]'")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_as_deployed_with_a_master_key(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    _set_stand_in_env(text, monkeypatch)
    for variables in KEY_VARIABLES.values():  # as deployed: the keys LiteLLM (and Reprise) read for entries without one
        monkeypatch.setenv(variables[0], "stand-in")
    config: dict[str, Any] = yaml.safe_load(text) or {}
    config["general_settings"] = {**(config.get("general_settings") or {}), "master_key": MASTER_KEY}
    deployed = tmp_path / path.name
    deployed.write_text(yaml.safe_dump(config))
    started, refusal = _starts_or_refused_alike(deployed, tmp_path)
    expected = REFUSED_AS_DEPLOYED.get(path.name)
    if expected is None:
        assert started, refusal
    else:
        assert refusal.startswith(f"reprise: config error: {expected}: "), refusal
