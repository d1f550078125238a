"""Settings read from the environment, as LiteLLM reads them: the first variable set wins.

One reading for every fallback (provider keys and endpoints, ``OPENAI_ORGANIZATION``,
``QDRANT_URL``, ``REDIS_HOST``, ...): a variable set to blank or whitespace counts as unset,
and a value is stripped, so a stray newline from a secrets file never reaches a header
or a URL. Three copies of this rule had drifted (one kept blank values).
"""

from __future__ import annotations

import os


def env_value(*names: str) -> str | None:
    """The first of ``names`` set to something other than blank, stripped; None if none is."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None
