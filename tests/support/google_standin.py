"""Stand-ins for Google's OpenAI-compatible endpoints (Gemini API, Vertex AI) and Google's
OAuth token endpoint, in one loopback aiohttp server (a thread), and nothing else.

- ``POST {prefix}/chat/completions`` and ``{prefix}/embeddings`` answer in OpenAI's shapes
  (JSON or SSE) only with ``Authorization: Bearer <a token it accepts>``; anything else
  (another path or method, another credential) is answered 401/404 and counted in
  :attr:`rejected`, so a test can assert it stayed empty.
- ``POST /token`` is a service account's ``token_uri``: it takes the JWT-bearer grant
  google-auth sends (https://developers.google.com/identity/protocols/oauth2/service-account),
  checks the assertion's RS256 signature against the service account's public key, and
  answers ``{"access_token", "expires_in", "token_type"}``. Each token it issues is then
  accepted by the API endpoints.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.threaded_server import ThreadedServer


def service_account(token_uri: str, project: str = "sa-project") -> tuple[dict[str, Any], bytes]:
    """A service-account JSON with a fresh RSA key, and the key's public PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {"type": "service_account", "project_id": project, "private_key_id": "k1", "private_key": private,
            "client_email": f"reprise-test@{project}.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_uri}
    return info, public


class GoogleStandIn(ThreadedServer):
    def __init__(self, prefix: str, api_key: str | None = None, public_key: bytes | None = None) -> None:
        self.prefix = prefix
        self.accepted: set[str] = {api_key} if api_key else set()
        self.public_key = public_key
        self.requests: list[dict[str, Any]] = []
        self.tokens_issued: list[str] = []
        super().__init__()

    def _reject(self, status: int, why: str) -> web.Response:
        self.rejected.append(why)
        return web.json_response({"error": {"code": status, "message": why, "status": "REJECTED"}}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or self.public_key is None:
            return self._reject(400, "grant_type")
        try:
            claims = jwt.decode(str(form.get("assertion")), self.public_key, algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")  # google-auth always sets it
        except jwt.PyJWTError as exc:
            return self._reject(400, f"assertion: {exc}")
        if "cloud-platform" not in claims.get("scope", ""):
            return self._reject(400, "scope")
        token = f"ya29.standin-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        self.accepted.add(token)
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/token":
            return await self._token(request)
        operation = request.path.removeprefix(self.prefix + "/")
        if request.method != "POST" or operation not in ("chat/completions", "embeddings") \
                or not request.path.startswith(self.prefix + "/"):
            return self._reject(404, f"{request.method} {request.path}")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.accepted:
            return self._reject(401, "authorization")
        body = json.loads(await request.read())
        self.requests.append({"operation": operation, "body": body, "token": bearer, "path": request.path})
        if operation == "embeddings":
            items = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return web.json_response({"object": "list", "model": body["model"], "usage": {
                "prompt_tokens": 2, "total_tokens": 2}, "data": [
                {"object": "embedding", "index": i, "embedding": [0.5, 0.25 * i]} for i in range(len(items))]})
        text = f"google {body['model']} answer {len(self.requests)}"
        base = {"id": f"g-{len(self.requests)}", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": word + " "}}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        end = {**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            end["usage"] = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        await response.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response
