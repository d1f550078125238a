"""What a cached answer would have cost: per-token prices for common models.

The gateway reports money saved by cache hits (``reprise_cache_saved_usd_total``,
``x-reprise-saved-usd``). Prices come from the config first, exactly as LiteLLM
writes them (``model_list[].model_info.input_cost_per_token`` /
``output_cost_per_token``, https://docs.litellm.ai/docs/proxy/custom_pricing),
then from the small built-in table below, matched on the provider's model name
(``openai/gpt-4o-2024-08-06`` finds ``gpt-4o``). A model with no price saves
tokens but no money; that is reported, never guessed.

The table is an estimate for dashboards (list prices in USD, no batch or cached-
input discounts); operators with negotiated prices set ``model_info``. Everything
is resolved once when the gateway starts, so a hit pays one dict lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprise.config import GatewayConfig

_M = 1e-6  # the table is written in USD per million tokens, as providers publish it

#: model family -> (USD per input token, USD per output token); list prices, 2025.
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50 * _M, 10.00 * _M),
    "gpt-4o-mini": (0.15 * _M, 0.60 * _M),
    "gpt-4.1": (2.00 * _M, 8.00 * _M),
    "gpt-4.1-mini": (0.40 * _M, 1.60 * _M),
    "gpt-4.1-nano": (0.10 * _M, 0.40 * _M),
    "gpt-4-turbo": (10.00 * _M, 30.00 * _M),
    "gpt-3.5-turbo": (0.50 * _M, 1.50 * _M),
    "gpt-5": (1.25 * _M, 10.00 * _M),
    "gpt-5-mini": (0.25 * _M, 2.00 * _M),
    "gpt-5-nano": (0.05 * _M, 0.40 * _M),
    "o1": (15.00 * _M, 60.00 * _M),
    "o3": (2.00 * _M, 8.00 * _M),
    "o3-mini": (1.10 * _M, 4.40 * _M),
    "o4-mini": (1.10 * _M, 4.40 * _M),
    "claude-opus-4": (15.00 * _M, 75.00 * _M),
    "claude-sonnet-4": (3.00 * _M, 15.00 * _M),
    "claude-3-7-sonnet": (3.00 * _M, 15.00 * _M),
    "claude-3-5-sonnet": (3.00 * _M, 15.00 * _M),
    "claude-3-5-haiku": (0.80 * _M, 4.00 * _M),
    "claude-3-opus": (15.00 * _M, 75.00 * _M),
    "claude-3-haiku": (0.25 * _M, 1.25 * _M),
    "deepseek-chat": (0.27 * _M, 1.10 * _M),
    "deepseek-reasoner": (0.55 * _M, 2.19 * _M),
    "text-embedding-3-small": (0.02 * _M, 0.0),
    "text-embedding-3-large": (0.13 * _M, 0.0),
    "text-embedding-ada-002": (0.10 * _M, 0.0),
}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per prompt (input) token and per completion (output) token."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


def builtin_price(model: str) -> Price | None:
    """The table's price for a provider model name, or None.

    The provider prefix is dropped, then the longest family name that the model
    equals or starts with followed by ``-`` wins: ``gpt-4o-mini-2024-07-18`` is
    ``gpt-4o-mini``, not ``gpt-4o``; ``gpt-4o`` never matches ``gpt-4o1``.
    """
    name = model.rpartition("/")[2].lower()
    best: str | None = None
    for family in BUILTIN_PRICES:
        if (name == family or name.startswith(family + "-")) and (best is None or len(family) > len(best)):
            best = family
    if best is None:
        return None
    return Price(*BUILTIN_PRICES[best])


def resolve_prices(config: GatewayConfig) -> dict[str, Price]:
    """Price per client-facing model name; a name without any price is absent.

    ``model_info`` on any deployment of a name overrides the table; a price given
    only for input (or output) keeps the table's other half, as LiteLLM merges them.
    """
    prices: dict[str, Price] = {}
    for entry in config.model_list:
        name = entry.model_name
        known = prices.get(name) or builtin_price(entry.litellm_params.model) or builtin_price(name)
        info = entry.model_info
        if info.input_cost_per_token is None and info.output_cost_per_token is None:
            if known is not None:
                prices.setdefault(name, known)
            continue
        prices[name] = Price(
            info.input_cost_per_token if info.input_cost_per_token is not None else (known.input if known else 0.0),
            info.output_cost_per_token if info.output_cost_per_token is not None else (known.output if known else 0.0),
        )
    return prices
