"""One warning per outage of a store, however partly it fails.

A store can refuse some operations and answer others: Redis at ``maxmemory`` with
``noeviction`` reads but refuses writes, and so does a full disk. Marking the store
recovered on any success made such an outage flap, a "failed" and a "recovered"
warning per request. So the failing state is kept per kind of operation: the first
failure while nothing fails logs the warning, later ones of any kind only add their
kind, and the outage ends, with one "recovered", once every kind that failed has
succeeded again.

A read that succeeds after reads failed ends the whole outage: the store was
unreachable and answers again. Traffic that only hits then never leaves the store
"failing" for want of a write, and a write that still fails opens a new outage.
"""

from __future__ import annotations

import logging

READ = "read"
WRITE = "write"
LOCK = "lock"
EMBED = "embed"


class Outage:
    """The kinds of operation on one store that are failing now, and the two log lines."""

    def __init__(self, log: logging.Logger, subject: str, meanwhile: str) -> None:
        self.log = log
        self.subject = subject
        """Names the store in the log lines: ``cache backend redis``."""
        self.meanwhile = meanwhile
        """What the gateway does until it recovers: ``serving from upstream``."""
        self.kinds: set[str] = set()
        """Empty while healthy; checked on the hot path before :meth:`succeeded` is called."""

    def failed(self, kind: str, action: str, exc: BaseException) -> None:
        """An operation of ``kind`` failed; the first failure of an outage is logged."""
        if not self.kinds:
            self.log.warning("%s failed on %s (%s); %s until it recovers", self.subject, action, exc, self.meanwhile)
        self.kinds.add(kind)

    def succeeded(self, kind: str) -> None:
        """An operation of ``kind`` worked; the outage ends when no failed kind is left."""
        if kind not in self.kinds:
            return
        if kind == READ:
            self.kinds.clear()
        else:
            self.kinds.discard(kind)
        if not self.kinds:
            self.log.warning("%s recovered", self.subject)
