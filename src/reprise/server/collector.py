"""The cyclic garbage collector of a ``reprise serve`` process, set for serving.

CPython collects its youngest generation every 700 net container allocations. A busy
gateway keeps each request's record alive until its observer batch settles (50 ms), so
at ~8,000 hits/s a young collection ran every ~90 requests, found nearly everything
still alive, and promoted it; every few seconds a full collection walked all ~60,000
objects of the loaded gateway (config, models, routes, modules) that will never be
garbage. Sampled under load (perf, 100 KB streamed hits): 4-5% of the server's time.

Once the gateway is open, :func:`settle_for_serving` collects once, freezes what exists
(``gc.freeze``: the permanent generation, never walked again) and raises the young
threshold to :data:`YOUNG_THRESHOLD`, so a young collection runs every few thousand
requests and finds the short-lived objects already gone. Cyclic garbage still goes:
every :data:`YOUNG_THRESHOLD` net allocations at the latest, as before but later.

Only ``reprise serve`` calls it (the process is the gateway's): an application that
embeds :class:`~reprise.server.app.RepriseApp` in its own server keeps its own settings.
"""

from __future__ import annotations

import gc
import os

SERVE_PROCESS_ENV = "REPRISE_SERVE_PROCESS"
"""Set by ``reprise serve`` (and so inherited by its ``--workers``): this process is the gateway's."""

YOUNG_THRESHOLD = 20_000
"""Net container allocations between young collections (CPython's default: 700)."""


def settle_for_serving() -> bool:
    """In a ``reprise serve`` process: collect, freeze the loaded gateway, collect young objects less often.

    Returns whether it did (False elsewhere). Older generations keep CPython's ratios.
    """
    if os.environ.get(SERVE_PROCESS_ENV) != "1" or not gc.isenabled():
        return False
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    return True
