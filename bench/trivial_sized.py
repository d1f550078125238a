"""The trivial baseline (``trivial_app.py``) answering ``TRIVIAL_ANSWER_BYTES`` bytes per request.

bench/scaling.py compares Reprise's hits with this app sending answers of the same size,
so the ratio shows what the cache costs, not what the bytes cost.
"""

from __future__ import annotations

import json
import os

import trivial_app
from trivial_app import Receive, Scope, Send

_SIZE = int(os.environ.get("TRIVIAL_ANSWER_BYTES", "0"))
_base = json.loads(trivial_app.BODY)
_base["choices"][0]["message"]["content"] += "x" * max(0, _SIZE - len(trivial_app.BODY))
BODY = json.dumps(_base, separators=(",", ":")).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await trivial_app.app(scope, receive, send)
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
