"""The library's entry point: a chat completion answered from the cache or by the caller's ``call``.

:meth:`reprise.cache.AsyncCache.chat` runs this; the cache protocol itself is the driver's
(:meth:`~reprise.cache.AsyncCache.get_or_produce`): here only the request is checked and keyed,
the caller's response turned into an :class:`~reprise.outcome.Outcome`, and the caller's own
exception raised again in every caller that waited for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from reprise.core.chat_answer import judge_chat_completion
from reprise.core.controls import parse_controls
from reprise.core.keys import chat_key_hash, storage_key
from reprise.core.policy import decide
from reprise.core.request import require_model, require_object, validate_chat
from reprise.driver_answers import CacheResult
from reprise.errors import UpstreamError
from reprise.outcome import Outcome

if TYPE_CHECKING:
    from reprise.cache import AsyncCache

ChatCall = Callable[[dict[str, Any]], Awaitable[Any]]


async def cached_chat(cache: AsyncCache, request: dict[str, Any], call: ChatCall) -> CacheResult:
    """See :meth:`reprise.cache.AsyncCache.chat`."""
    if cache.closed:
        raise RuntimeError("this AsyncCache is closed")
    require_object(request)
    require_model(request)
    validate_chat(request)
    plan = decide(cache.policy, parse_controls(request.get("cache")))
    key = storage_key(chat_key_hash(request), plan.namespace)
    upstream_request = {k: v for k, v in request.items() if k != "cache"}

    async def produce() -> Outcome:
        try:
            response = await call(upstream_request)
        except Exception as exc:  # the caller's own error: shared as a failure, raised as itself
            raise _CallFailed(exc) from exc
        if hasattr(response, "model_dump"):
            response = response.model_dump(mode="json", exclude_unset=True)
        meta = {"kind": "chat", "model": request.get("model"), "usage": response.get("usage")}
        # stored only as the gateway stores: a finished chat completion without ``error``
        return Outcome(200, orjson.dumps(response), meta, storable=judge_chat_completion(response) is True)

    try:
        answer = await cache.get_or_produce(key, plan, produce)
    except UpstreamError as exc:
        failed = exc if isinstance(exc, _CallFailed) else exc.__cause__
        if not isinstance(failed, _CallFailed):
            raise
        error = failed.error  # raised below, outside this handler, so its __context__ stays its own
    else:
        age = answer.entry.age(cache.clock()) if answer.entry is not None else 0.0
        return CacheResult(
            orjson.loads(answer.body), answer.cache_status, key if plan.uses_cache else None, age
        )
    # Every caller waiting for this answer raises the very exception ``call`` raised (its type,
    # attributes and own cause), each with the traceback it left ``call`` with, as
    # asyncio.Future.result() does: raising one object in several tasks would otherwise pile
    # every earlier caller's frames onto it.
    raise error.with_traceback(failed.traceback)


class _CallFailed(UpstreamError):
    """The library's ``call`` raised: the failure its flight shares carries that exception,
    and its traceback as it left ``call``, for every caller waiting to raise it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.traceback = error.__traceback__
