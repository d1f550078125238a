"""``reprise cache stats|ls|get|rm|flush``: on a shared (disk) store directly, and via ``--url``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config
from tests.support.stub_upstream import StubUpstream


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reprise.cli.main", "cache", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


def _fill(gw: GatewayProcess, prompts: dict[str, str | None]) -> dict[str, str]:
    keys = {}
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for prompt, namespace in prompts.items():
            extra: dict[str, Any] = {"cache": {"namespace": namespace}} if namespace else {}
            keys[prompt] = c.post("/chat/completions", json=chat(prompt, **extra)).headers["x-litellm-cache-key"]
            c.post("/chat/completions", json=chat(prompt, **extra))
    return keys


def test_cli_on_a_disk_store(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream, tmp_path: Path) -> None:
    config = gateway_config(stub.url, cache_params={"type": "disk", "disk_cache_dir": str(tmp_path / "c"), "ttl": 600})
    gw = make_gateway(config)
    keys = _fill(gw, {"alpha": None, "beta": "team-b", "gamma": "team-b"})
    path = str(gw.config_path)

    stats = cli("stats", "--config", path, "--json")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["entries"] == 3 and summary["namespaces"] == {"-": 1, "team-b": 2}
    assert summary["models"] == {"gpt-4o": 3} and summary["bytes"] > 0
    assert "scanned 3/3 entries (100%)" in stats.stderr  # progress goes to stderr

    listing = cli("ls", "--config", path, "--namespace", "team-b")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].split()[:3] == ["KEY", "MODEL", "AGE"]
    assert keys["beta"] in listing.stdout and keys["alpha"] not in listing.stdout

    newest = cli("ls", "--config", path, "--limit", "1", "--json")
    assert len(json.loads(newest.stdout)["entries"]) == 1

    # options and keys in any order: keys last, as the synopsis reads, or on both sides of an option
    got = cli("get", "--config", path, keys["alpha"])
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["body"]["choices"][0]["message"]["content"].startswith("echo: alpha")
    both = cli("get", keys["beta"], "--config", path, keys["gamma"])
    assert both.returncode == 0, both.stderr
    assert {view["key"] for view in json.loads(both.stdout)} == {keys["beta"], keys["gamma"]}
    assert cli("get", "nope", "--config", path).returncode == 1

    assert cli("rm", "--config", path, keys["alpha"]).stdout.strip() == "deleted 1 of 1 keys"
    again = httpx.post(gw.url + "/chat/completions", json=chat("alpha"), headers=AUTH)
    assert again.headers["x-reprise-cache"] == "miss"

    refused = cli("flush", "--config", path, "--namespace", "team-b")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    flushed = cli("flush", "--config", path, "--namespace", "team-b", "--yes")
    assert flushed.returncode == 0, flushed.stderr
    assert "flushed namespace 'team-b': 2 entries removed" in flushed.stdout
    assert "deleted 2/2 entries (100%)" in flushed.stderr
    assert json.loads(cli("stats", "--config", path, "--json").stdout)["entries"] == 1  # "alpha" again


def test_cli_explains_the_in_process_store_and_uses_the_admin_api(
        make_gateway: Callable[..., GatewayProcess]) -> None:
    gw = make_gateway()
    keys = _fill(gw, {"one": None, "two": None})
    path = str(gw.config_path)
    local = cli("ls", "--config", path)
    assert local.returncode == 2 and "inside the server process" in local.stderr and "--url" in local.stderr

    stats = cli("stats", "--config", path, "--url", gw.url, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["totals"]["hits"] == 2
    listing = cli("ls", "--config", path, "--url", gw.url)
    assert keys["one"] in listing.stdout and keys["two"] in listing.stdout
    assert cli("rm", keys["one"], "--config", path, "--url", gw.url).returncode == 0
    assert cli("get", keys["one"], "--config", path, "--url", gw.url).returncode == 1
    flushed = cli("flush", "--config", path, "--url", gw.url, "--yes", "--json")
    assert json.loads(flushed.stdout)["deleted"] == 1
    wrong = cli("stats", "--config", path, "--url", gw.url, "--key", "sk-wrong")
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_cli_refuses_bad_arguments_before_reading_the_config(tmp_path: Path) -> None:
    """A limit below 1 is a usage error (it used to slice the listing), as are missing or stray keys."""
    path = str(tmp_path / "never-read.yaml")
    for limit, reason in (("-3", "-3 is not a positive number"), ("0", "0 is not a positive number"),
                          ("ten", "'ten' is not a whole number")):
        result = cli("ls", "--config", path, "--limit", limit)
        assert result.returncode == 2 and f"argument --limit: {reason}" in result.stderr, result.stderr
    for args, reason in ((["get"], "get needs at least one KEY"), (["rm", "--yes"], "rm needs at least one KEY"),
                         (["stats", "abc"], "stats takes no KEY (got abc)"),
                         (["flush", "--yes", "abc"], "flush takes no KEY (got abc)")):
        result = cli(*args, "--config", path)
        assert result.returncode == 2 and reason in result.stderr, result.stderr


def test_cli_with_caching_off(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model_list": []}))
    result = cli("stats", "--config", str(path))
    assert result.returncode == 2 and "caching is off" in result.stderr
