"""Schemathesis fuzzes a real ``reprise serve`` from its own ``/openapi.json``.

Every operation of the document gets positive cases (valid by the schema; most are sent
to a model mapped to the healthy stub upstream, so they exercise the cache paths) and
negative ones (violating the schema). Checks: no 5xx, status codes, content types,
headers and bodies as the document says, and invalid input rejected. Bounded: a fixed
number of examples per operation, derandomised, one request timeout, so the whole
module finishes in well under a minute on two cores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.conftest import AUTH, GatewayProcess, gateway_config
from tests.support.stub_upstream import StubUpstream

EXAMPLES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
#: what a positive case is routed to: healthy stub models (others would only ever be 404s)
HEALTHY = {"/chat/completions": "gpt-4o", "/v1/chat/completions": "gpt-4o-mini",
           "/embeddings": "text-embedding-3-small", "/v1/embeddings": "text-embedding-3-small",
           # the stub speaks neither API: the local mock model answers them (through the cache all the same)
           "/responses": "mock", "/v1/responses": "mock", "/completions": "mock", "/v1/completions": "mock",
           "/v1/messages": "gpt-4o", "/messages": "gpt-4o-mini",
           "/v1/messages/count_tokens": "gpt-4o", "/messages/count_tokens": "gpt-4o-mini"}


@pytest.fixture(scope="module")
def fuzz_gateway(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    config = gateway_config(stub.url, {"type": "local", "max_entries": 500},
                            keys_file=str(workdir / "keys.json"), max_request_size_mb=1)
    gw = GatewayProcess(config, workdir).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: GatewayProcess) -> Any:
    schema = schemathesis.openapi.from_url(fuzz_gateway.url + "/openapi.json")
    schema.config.update(request_timeout=10)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=EXAMPLES_PER_OPERATION, deterministic=True)
    return schema


@pytest.fixture(scope="module")
def tally() -> Counter[str]:
    """Cases sent, by operation and status: printed at the end (``pytest -s``) for docs/reliability.md."""
    return Counter()


schema = schemathesis.pytest.from_fixture("api_schema")


def route_to_healthy_stub(case: Any) -> None:
    """A positive chat/embeddings case names a configured model, with provider-sized numbers."""
    mode = getattr(getattr(case.meta, "generation", None), "mode", None)
    if mode != GenerationMode.POSITIVE or not isinstance(case.body, dict) or case.path not in HEALTHY:
        return
    case.body["model"] = HEALTHY[case.path]
    if isinstance(case.body.get("dimensions"), int):
        case.body["dimensions"] = 1 + case.body["dimensions"] % 64  # still valid; the stub builds the vectors


@schema.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_fuzz_the_http_api(case: Any, fuzz_gateway: GatewayProcess, tally: Counter[str]) -> None:
    route_to_healthy_stub(case)
    response = case.call(headers=AUTH)
    tally[f"{case.method} {case.path} {response.status_code}"] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzed_gateway_logged_no_server_error(fuzz_gateway: GatewayProcess, tally: Counter[str]) -> None:
    """Runs after the fuzz cases (same module): nothing reached the 500 edge."""
    assert "Traceback" not in fuzz_gateway.log
    assert "status=500" not in fuzz_gateway.log
    print(f"\nschemathesis cases: {sum(tally.values())}")
    for line, count in sorted(tally.items()):
        print(f"  {count:5d}  {line}")
