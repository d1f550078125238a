"""The fixtures the Responses and completions tests share: the stand-in, a gateway on it, an SDK client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.server.conftest import MASTER_KEY, GatewayProcess
from tests.support.openai_apis_standin import OpenAIApisStandIn, standin_config


def openai_apis_fixtures(name: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """``standin`` and ``gw`` (one per test module; the gateway's files under a temp dir named
    ``name``) and ``sdk``; assign them to those names at a test module's top level."""

    @pytest.fixture(scope="module")
    def standin() -> Iterator[OpenAIApisStandIn]:
        with OpenAIApisStandIn() as server:
            yield server

    @pytest.fixture(scope="module")
    def gw(standin: OpenAIApisStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
        gateway = GatewayProcess(standin_config(standin, MASTER_KEY), tmp_path_factory.mktemp(name)).start()
        yield gateway
        gateway.stop()

    @pytest.fixture()
    def sdk(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
            yield client

    return standin, gw, sdk
