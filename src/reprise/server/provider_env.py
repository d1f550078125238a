"""LiteLLM's ways of naming an OpenAI-speaking provider's key and endpoint: environment
fallbacks, and Ollama's base URL.

A LiteLLM config often names no ``api_key`` or ``api_base`` for an ``openai/`` (or
``groq/``, ``hosted_vllm/``, ...) entry because LiteLLM reads them from the environment
(``litellm/main.py``: ``api_base or ... or OPENAI_BASE_URL or OPENAI_API_BASE or
https://api.openai.com/v1``; ``api_key or ... or OPENAI_API_KEY``). Found from outside:
Reprise ignored them, so such a config sent every request without credentials (401s), or
sent prompts and the configured key to the public API instead of the endpoint the operator
set in ``OPENAI_API_BASE``. The names below are the ones LiteLLM 1.110 reads, first wins;
an entry's own ``api_key`` / ``api_base`` always win over them.
"""

from __future__ import annotations

from reprise.config.environ import env_value

#: Provider prefix -> the environment variables LiteLLM reads for its key, in its order.
KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_KEY", "TOGETHER_AI_TOKEN"),
    "fireworks_ai": ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
    "ollama": ("OLLAMA_API_KEY",),
    "ollama_chat": ("OLLAMA_API_KEY",),
    "hosted_vllm": ("HOSTED_VLLM_API_KEY",),
    "openai_like": ("OPENAI_LIKE_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "sambanova": ("SAMBANOVA_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
}

#: Provider prefix -> the environment variables LiteLLM reads for its endpoint, in its order.
BASE_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "deepseek": ("DEEPSEEK_API_BASE",),
    "together_ai": ("TOGETHER_AI_API_BASE",),
    "fireworks_ai": ("FIREWORKS_API_BASE",),
    "openrouter": ("OPENROUTER_API_BASE",),
    "ollama": ("OLLAMA_API_BASE",),
    "ollama_chat": ("OLLAMA_API_BASE",),
    "hosted_vllm": ("HOSTED_VLLM_API_BASE",),
    "openai_like": ("OPENAI_LIKE_API_BASE",),
    "xai": ("XAI_API_BASE",),
    "perplexity": ("PERPLEXITY_API_BASE",),
    "deepinfra": ("DEEPINFRA_API_BASE",),
    "sambanova": ("SAMBANOVA_API_BASE",),
    "nvidia_nim": ("NVIDIA_NIM_API_BASE",),
}


def env_api_key(provider: str) -> str | None:
    """The key LiteLLM would take from the environment for ``provider`` (None: none set)."""
    return env_value(*KEY_VARIABLES.get(provider, ()))


def env_api_base(provider: str) -> str | None:
    """The endpoint LiteLLM would take from the environment for ``provider`` (None: none set)."""
    base = env_value(*BASE_VARIABLES.get(provider, ()))
    return base.rstrip("/") if base else None


def openai_endpoint(provider: str, api_base: str) -> str:
    """``api_base`` as the root of the provider's OpenAI-compatible API.

    LiteLLM's ``ollama/`` and ``ollama_chat/`` take Ollama's own address
    (``http://host:11434``, as its docs show) and call Ollama's native API; Reprise speaks
    OpenAI's, which Ollama serves under ``/v1``: found from outside, such a config started
    and every request met Ollama's 404.
    """
    if provider in ("ollama", "ollama_chat") and api_base and not api_base.rstrip("/").endswith("/v1"):
        return api_base.rstrip("/") + "/v1"
    return api_base
