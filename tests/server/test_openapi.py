"""``/openapi.json`` documents exactly the routes the app serves, and is valid enough to fuzz from."""

from __future__ import annotations

import httpx
import schemathesis

from reprise import __version__
from reprise.config.loader import parse_config
from reprise.server.app import RepriseApp
from reprise.server.openapi import build_openapi
from reprise.server.routes import AZURE_DEPLOYMENTS, AZURE_PATHS
from tests.server.conftest import AUTH, GatewayProcess

#: Operator routes, documented in docs/operations.md rather than in the API document.
OPERATOR_PREFIXES = ("/cache/", "/metrics", "/ui")


def test_every_served_route_is_documented() -> None:
    documented = set(build_openapi(__version__)["paths"])
    table = RepriseApp(parse_config({"general_settings": {"master_key": "sk-openapi-test-key"}})).routes
    served = {path for route in table.routes for path in route.paths if not path.startswith(OPERATOR_PREFIXES)}
    served = served - {AZURE_DEPLOYMENTS} | set(AZURE_PATHS)  # one prefix route, two templated paths
    assert documented == served


def test_every_documented_operation_is_routed(gateway: GatewayProcess) -> None:
    doc = httpx.get(gateway.url + "/openapi.json").json()
    assert doc["info"]["version"] == __version__
    for path, operations in doc["paths"].items():
        for method in operations:
            r = httpx.request(method.upper(), gateway.url + path, headers=AUTH, json={})
            assert r.status_code not in (404, 405), (method, path, r.status_code)
            assert r.status_code < 500


def test_the_document_loads_in_schemathesis(gateway: GatewayProcess) -> None:
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    operations = list(schema.get_all_operations())
    assert len(operations) >= 15
    assert all(type(result).__name__ == "Ok" for result in operations)
