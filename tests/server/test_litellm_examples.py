"""LiteLLM's own example proxy configs (``litellm/proxy/example_config_yaml/*.yaml`` in the
``litellm`` wheel; issue 14): each one either starts, or is refused by ``reprise config
check`` and ``reprise serve`` alike with a message naming the key.

The files are found through an installed ``litellm`` package (located, never imported) or
the directory in ``LITELLM_EXAMPLE_CONFIGS``; without either the test is skipped, saying so.
Every ``os.environ/NAME`` a file references is set to a stand-in value (an unreachable
loopback URL for ``*_BASE`` variables): no provider is called.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.skipif(not EXAMPLES, reason="litellm's example configs not found: pip install litellm "
                                         "(or set LITELLM_EXAMPLE_CONFIGS to the directory)")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_starts_or_is_refused_alike(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            make_gateway: Callable[..., GatewayProcess]) -> None:
    text = path.read_text()
    for name in set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", text)):
        monkeypatch.setenv(name, "http://127.0.0.1:9/v1" if "BASE" in name or "URL" in name else "stand-in")
    check = run_cli("config", "check", "--config", str(path))
    if check.returncode == 0:
        gateway = make_gateway(yaml.safe_load(text))  # raises if it does not start
        assert gateway.proc is not None and gateway.proc.poll() is None
        return
    serve = run_cli("serve", "--config", str(path), "--port", "0")
    assert (check.returncode, serve.returncode) == (2, 2)
    first = check.stderr.splitlines()[0]
    assert first == serve.stderr.splitlines()[0], (check.stderr, serve.stderr)
    assert re.search(r"(model_list|general_settings|litellm_settings|router_settings)[\[.]", first), first
