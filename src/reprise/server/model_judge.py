"""The semantic judge's call of a ``model_list`` chat model, through the gateway's own forwarding.

The judge (:mod:`reprise.semantic.judge`) asks a chat model whether two prompts ask the
same thing. It goes the way any chat completion to that model goes, in process: the
router's choice of deployment (round-robin, aliases), the deployment's credentials,
timeout and provider-call slots, its wire (OpenAI, Azure, Anthropic's Messages API, the
LiteLLM SDK, a mock). It is not a client request: it does not pass through the answer
cache (a verdict has its own memory, :class:`~reprise.semantic.judge.VerdictCache`), nor
the request metrics (the judge's own counters are on ``/metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reprise.errors import UpstreamError
from reprise.server.upstream import upstream_body

if TYPE_CHECKING:
    from reprise.server.gateway import Gateway

PATH = "/chat/completions"


class GatewayJudgeCall:
    """Posts a judge's chat body to the ``model_list`` entry ``name`` (a :data:`JudgeCall`)."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        self.gateway = gateway
        self.name = name

    async def __call__(self, body: dict[str, Any]) -> bytes:
        deployment = self.gateway.pick(self.name)
        outcome = await self.gateway.upstream(deployment).post(
            deployment, PATH, upstream_body({**body, "model": self.name}, deployment))
        if not outcome.ok:
            raise UpstreamError(f"judge model {self.name!r} answered HTTP {outcome.status}", outcome.status)
        return outcome.body
