"""The trivial baseline answering fixed bytes read from a file: ``TRIVIAL_BODY_FILE``.

bench/large_answers.py gives it the very bytes a Reprise hit sends (the JSON answer, or its
SSE replay with ``TRIVIAL_CONTENT_TYPE=text/event-stream``), so the ratio shows what the
cache costs beyond the bytes. Run it as uvicorn runs any app (``python -m uvicorn
trivial_bytes:app``), or with ``python bench/trivial_bytes.py --port N`` to serve it with
Reprise's own HTTP protocol (``reprise.server.protocol``: one write per sized answer).
"""

from __future__ import annotations

import os
from pathlib import Path

import trivial_app
from trivial_app import Receive, Scope, Send

BODY = Path(os.environ["TRIVIAL_BODY_FILE"]).read_bytes() if "TRIVIAL_BODY_FILE" in os.environ else b""
COPIES = [bytes(bytearray(BODY)) for _ in range(int(os.environ.get("TRIVIAL_BODY_COPIES", "1")))]
"""``TRIVIAL_BODY_COPIES=N``: N equal bodies, distinct in memory, sent in turn (a cache's working set
of N answers is N places in memory: this baseline pays the same cold reads)."""
HEADERS = [(b"content-type", os.environ.get("TRIVIAL_CONTENT_TYPE", "application/json").encode()),
           (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await trivial_app.app(scope, receive, send)
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    body = COPIES[0]
    if len(COPIES) > 1:
        COPIES.append(COPIES.pop(0))
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve ``app`` with the options ``reprise serve`` passes uvicorn (cli/main.py)."""
    import argparse

    import uvicorn

    from reprise.server.protocol import ConnectionLimits, protocol_class

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http=protocol_class(ConnectionLimits()),
                ws="none", access_log=False, proxy_headers=False, server_header=False, log_level="warning",
                lifespan="on")


if __name__ == "__main__":
    main()
