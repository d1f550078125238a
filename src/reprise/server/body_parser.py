"""Request bodies → JSON objects without letting one body stall the event loop.

The pure rules are in :mod:`reprise.core.body`. This adds the one thing they cannot do
alone: a body with many values has them counted in a helper
process first, so a body that would cost the loop half a second to build (and the GIL
the whole time: a thread would not help) is refused without ever being built here. One
helper process, started on the first such body (most gateways never see one) and
stopped with the app; if it dies, the next body starts another.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from reprise.core.body import count_values, is_suspect, parse_json_object, too_complex, too_many_values

log = logging.getLogger("reprise.server")


class BodyParser:
    """``await parse(raw)``: the body as a dict, or RequestError (400)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, raw: bytes) -> dict[str, Any]:
        if is_suspect(raw) and too_complex(*await self._count(raw)):
            raise too_many_values()
        return parse_json_object(raw)

    async def _count(self, raw: bytes) -> tuple[int, int]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.wrap_future(self._pool.submit(count_values, raw))
        except BrokenProcessPool:  # the helper died (killed, out of memory): the next body gets a new one
            log.error("the body-counting process died; starting another for the next large body")
            self._pool = None
            return 1 << 62, 0  # cannot tell: refuse rather than build it on the loop

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
