"""Semantic caching that embeds with a ``model_list`` entry (LiteLLM's ``*_embedding_model``).

A real gateway process and the stub provider; the embedding entry points at the
stub's bag-of-words model (``words`` in its name), so prompts sharing words are
similar. The stub counts every embeddings call it receives, per model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.testing import assert_allclose

from reprise.config import GatewayConfig
from reprise.server.gateway import Gateway
from tests.server.conftest import AUTH, GatewayProcess, ask_with_system, gateway_config, unique
from tests.support.stub_upstream import StubUpstream, words_vector

EMBEDDER = "embed-words"
UPSTREAM_EMBEDDER = "stub-words-embedding"


def config_with_embedder(stub_url: str, params: dict[str, Any], name: str = EMBEDDER,
                         api_base: str | None = None) -> dict[str, Any]:
    config = gateway_config(stub_url, params)
    config["model_list"].append({"model_name": name, "litellm_params": {
        "model": f"openai/{UPSTREAM_EMBEDDER}", "api_base": api_base or stub_url, "api_key": "sk-up", "timeout": 3}})
    return config


def local_params(directory: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "local-semantic", "ttl": 600, "semantic_cache_dir": str(directory),
            "semantic_cache_embedding_model": EMBEDDER, "similarity_threshold": 0.8, **extra}


@pytest.fixture(scope="module")
def words_gateway(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("model-list-semantic")
    params = local_params(workdir / "cache", semantic_cache_guards=True)  # the guards are opt-in (issue 13)
    gw = GatewayProcess(config_with_embedder(stub.url, params), workdir).start()
    yield gw
    gw.stop()


@pytest.fixture()
def sem(words_gateway: GatewayProcess, upstream: StubUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=words_gateway.url, headers=AUTH, timeout=30) as c:
        yield c


ask = ask_with_system


def embedding_calls(stub: StubUpstream, model: str = UPSTREAM_EMBEDDER) -> int:
    return int(stub.calls()["by_model"].get(model, 0))


def cosine(a: str, b: str) -> float:
    return float(np.asarray(words_vector(a)) @ np.asarray(words_vector(b)))


def test_similar_prompt_is_a_semantic_hit(sem: httpx.Client, upstream: StubUpstream) -> None:
    system = unique("plumber")
    cached, new = "How do I fix a dripping tap?", "okay so how do i fix a dripping tap"
    first = ask(sem, system, cached)
    assert first.headers["x-reprise-cache"] == "miss"
    assert embedding_calls(upstream) == 1  # embedded once: the lookup's vector is reused to store
    second = ask(sem, system, new)
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.headers["x-reprise-cache-kind"] == "semantic"
    assert float(second.headers["x-litellm-semantic-similarity"]) == pytest.approx(cosine(cached, new), abs=1e-3)
    assert 0.8 <= cosine(cached, new) < 0.99  # similar, not identical: the stub's bag of words
    assert second.headers["x-reprise-semantic-match-key"] == first.headers["x-litellm-cache-key"]
    assert second.json() == first.json()
    assert upstream.calls()["chat"] == 1
    assert embedding_calls(upstream) == 2


def test_embedding_of_a_repeated_prompt_comes_from_the_exact_cache(sem: httpx.Client, upstream: StubUpstream) -> None:
    text = unique("How do I descale a kettle")
    assert ask(sem, unique("scope a"), text).headers["x-reprise-cache"] == "miss"
    assert embedding_calls(upstream) == 1
    # Another scope: the chat answer is a miss, but the prompt's embedding is already cached.
    assert ask(sem, unique("scope b"), text).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2
    assert embedding_calls(upstream) == 1
    # no-cache is about the answer: the embedding (made here to store the vector) is still read.
    scope_c = unique("scope c")
    fresh = sem.post("/chat/completions", json={"model": "gpt-4o", "cache": {"no-cache": True}, "messages": [
        {"role": "system", "content": scope_c}, {"role": "user", "content": text}]})
    assert fresh.status_code == 200 and upstream.calls()["chat"] == 3
    similar = ask(sem, scope_c, "okay so " + text.lower())  # a hit: that vector was stored
    assert similar.headers["x-reprise-cache-kind"] == "semantic"
    assert embedding_calls(upstream) == 2  # only the new wording was sent to the provider
    # It is the very entry a client's POST /embeddings for that model reads.
    r = sem.post("/embeddings", json={"model": EMBEDDER, "input": text})
    assert r.status_code == 200 and r.headers["x-reprise-cache"] == "hit"
    assert_allclose(r.json()["data"][0]["embedding"], words_vector(text), atol=1e-6)
    assert embedding_calls(upstream) == 2


def test_guards_still_veto_traps(sem: httpx.Client, upstream: StubUpstream) -> None:
    system = unique("orders")
    assert cosine("Track order 48213", "Track order 48231") == pytest.approx(1.0)  # digits are invisible
    for text in ("Track order 48213", "Track order 48231"):
        assert ask(sem, system, text).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


@pytest.mark.parametrize("failure", ["http-500", "connection-refused"])
def test_embedding_failure_fails_open(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream,
                                      upstream: StubUpstream, tmp_path: Path, failure: str) -> None:
    if failure == "http-500":
        config = gateway_config(stub.url, local_params(tmp_path / "c", semantic_cache_embedding_model="fail-500"))
    else:
        config = config_with_embedder(stub.url, local_params(tmp_path / "c"), api_base="http://127.0.0.1:9/v1")
    gw = make_gateway(config)
    system = unique("outage")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        for text in ("How do I fix a dripping tap?", "okay so how do i fix a dripping tap"):
            r = ask(c, system, text)
            assert r.headers["x-reprise-cache"] == "miss" and "x-reprise-cache-kind" not in r.headers
        assert ask(c, system, "How do I fix a dripping tap?").headers["x-reprise-cache"] == "hit"  # exact
    assert upstream.calls()["chat"] == 2
    # One embedding attempt per exact miss (not retried to store it); one warning per outage.
    assert embedding_calls(upstream, "fail-500") == (2 if failure == "http-500" else 0)
    assert gw.log.count("failed on embedding") == 1


@pytest.mark.parametrize(("cache_type", "setting"), [
    ("local-semantic", "semantic_cache_embedding_model"),
    ("qdrant-semantic", "qdrant_semantic_cache_embedding_model"),
])
def test_unknown_embedding_model_refuses_to_start(stub: StubUpstream, tmp_path: Path,
                                                  cache_type: str, setting: str) -> None:
    params = {"type": cache_type, setting: "no-such-model", "qdrant_path": str(tmp_path / "q"),
              "semantic_cache_dir": str(tmp_path / "c")}
    gw = GatewayProcess(config_with_embedder(stub.url, params), tmp_path)
    with pytest.raises(RuntimeError) as failed:
        gw.start()
    assert f"litellm_settings.cache_params.{setting}" in str(failed.value)
    assert "'no-such-model' is neither a model_name in model_list nor an embedded model" in str(failed.value)


def test_qdrant_semantic_embeds_with_a_model_list_entry(make_gateway: Callable[..., GatewayProcess],
                                                        stub: StubUpstream, upstream: StubUpstream,
                                                        tmp_path: Path) -> None:
    params = {"type": "qdrant-semantic", "similarity_threshold": 0.8, "qdrant_path": str(tmp_path / "q"),
              "qdrant_collection_name": "reprise_model_list", "qdrant_semantic_cache_embedding_model": EMBEDDER}
    gw = make_gateway(config_with_embedder(stub.url, params))
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        assert ask(c, "s", "How do I reset my password?").headers["x-reprise-cache"] == "miss"
        r = ask(c, "s", "how can I reset my password")
        assert r.headers["x-reprise-cache"] == "hit" and r.headers["x-reprise-cache-kind"] == "semantic"
        assert float(r.headers["x-litellm-semantic-similarity"]) == pytest.approx(
            cosine("How do I reset my password?", "how can I reset my password"), abs=1e-3)
    assert upstream.calls()["chat"] == 1


async def test_a_model_list_entry_wins_over_an_embedded_model_of_the_same_name(tmp_path: Path) -> None:
    params = {"type": "local-semantic", "semantic_cache_dir": str(tmp_path),
              "semantic_cache_embedding_model": "use-multilingual-v3"}
    config = config_with_embedder("http://127.0.0.1:9/v1", params, name="use-multilingual-v3")
    gateway = Gateway.from_config(GatewayConfig.model_validate(config))
    try:
        assert gateway.semantic is not None and gateway.semantic.remote is not None
        assert gateway.semantic.remote.name == "use-multilingual-v3"
        assert gateway.semantic.matcher.embedder is None  # the embedded model was not loaded
        assert gateway.semantic.matcher.settings.threshold == 0.90  # documented default, not USE's 0.70
    finally:
        await gateway.aclose()
