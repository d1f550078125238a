"""``azure/`` models without an API key (issue 14 item 1): Microsoft Entra ID tokens sent as
``Authorization: Bearer``, from ``azure_ad_token`` / ``AZURE_AD_TOKEN`` as given, or from
azure-identity (a service principal's client secret, against a TLS loopback stand-in for
the Entra ID token endpoint, tests/support/entra_standin.py). The Azure stand-in accepts
only that bearer token, never an ``api-key``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.support.azure_standin import AzureStandIn
from tests.support.entra_standin import EntraStandIn


def _config(azure: AzureStandIn, **params: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "gpt-4o", "litellm_params": {
        "model": "azure/my-gpt4o", "api_base": azure.url, "api_version": "2024-10-21", **params}}],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}}}


def _miss_then_hit(gw: GatewayProcess) -> None:
    messages = [{"role": "user", "content": unique()}]
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        second = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.text == first.text


@pytest.fixture(autouse=True)
def no_azure_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_API_KEY", "AZURE_AD_TOKEN", "AZURE_API_BASE", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                 "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_azure_ad_token_from_the_entry_is_sent_as_bearer(make_gateway: Callable[..., GatewayProcess]) -> None:
    with AzureStandIn(bearer_token="entry-token") as azure:
        _miss_then_hit(make_gateway(_config(azure, azure_ad_token="entry-token")))
        assert [r["deployment"] for r in azure.requests] == ["my-gpt4o"]
        assert azure.rejected == []


def test_azure_ad_token_from_the_environment(make_gateway: Callable[..., GatewayProcess],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_AD_TOKEN", "env-token")
    with AzureStandIn(bearer_token="env-token") as azure:
        _miss_then_hit(make_gateway(_config(azure)))
        assert len(azure.requests) == 1 and azure.rejected == []


def test_a_key_wins_over_a_token(make_gateway: Callable[..., GatewayProcess]) -> None:
    with AzureStandIn(api_key="azure-key") as azure:
        _miss_then_hit(make_gateway(_config(azure, api_key="azure-key", azure_ad_token="unused")))
        assert azure.rejected == []


def test_client_secret_credential_from_litellm_environment(
        make_gateway: Callable[..., GatewayProcess], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LiteLLM's AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET: azure-identity's
    ClientSecretCredential asks the (stand-in) authority once; the token is reused."""
    with EntraStandIn(tmp_path, "my-tenant", "my-client", "s3cret") as entra, \
            AzureStandIn(bearer_token="entra-token-1") as azure:
        monkeypatch.setenv("AZURE_TENANT_ID", "my-tenant")
        monkeypatch.setenv("AZURE_CLIENT_ID", "my-client")
        monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cret")
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra.url)  # azure-identity's own variable
        monkeypatch.setenv("SSL_CERT_FILE", str(entra.cert_path))  # the gateway trusts the stand-in only
        gw = make_gateway(_config(azure))
        _miss_then_hit(gw)
        _miss_then_hit(gw)
        assert (entra.tokens_issued, entra.rejected) == (["entra-token-1"], [])
        assert len(azure.requests) == 2 and azure.rejected == []


def test_entra_failure_is_a_502_naming_the_model_and_not_cached(
        make_gateway: Callable[..., GatewayProcess], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with EntraStandIn(tmp_path, "my-tenant", "my-client", "s3cret") as entra, \
            AzureStandIn(bearer_token="never") as azure:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(entra.cert_path))
        gw = make_gateway(_config(azure, tenant_id="my-tenant", client_id="my-client", client_secret="wrong"))
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
            for _ in range(2):
                with pytest.raises(openai.InternalServerError) as caught:
                    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
                assert caught.value.status_code == 502
                assert "'gpt-4o': could not get an access token" in caught.value.message
                assert "s3cret" not in caught.value.message and "wrong" not in caught.value.message
        assert entra.rejected == ["client_secret", "client_secret"] and azure.requests == []
