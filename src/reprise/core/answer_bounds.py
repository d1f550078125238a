"""How much of a provider's answer the gateway holds in memory, and what happens past it.

Why bounds at all: a provider (or anything answering at a deployment's ``api_base``) can
send an answer of any size, and the gateway holds some answers whole: a plain JSON answer
or an error body is read whole before it is judged, stored and shared; a stream is
recorded for storing while it passes. Unbounded, one misbehaving deployment takes the
process's memory, and every tenant's requests with it. The bounds are far above any real
answer (a 128k-token completion is well under 1 MiB of JSON) and fixed: a deployment that
needs more is broken, not configured differently.

* :data:`MAX_ANSWER_BYTES` (64 MiB): a provider's answer read whole (a plain answer, an
  error body). Past it the request fails 502 ``upstream_answer_too_large``, nothing is
  stored, and the requests waiting for that call get the same failure.
* :data:`MAX_RECORDED_BYTES` (32 MiB): one stream recorded for storing, and one event held
  while its end is awaited. Past it the stream is still forwarded to the request that led
  it, whole, but neither stored nor shared: the identical requests that waited for it then
  call the provider themselves (see :mod:`reprise.cache`). An event longer than the bound
  is forwarded as its bytes arrive, never held whole.
"""

from __future__ import annotations

#: The most bytes of a provider's answer read whole (plain JSON, an error body).
MAX_ANSWER_BYTES = 64 * 2**20
#: The most bytes of one stream kept for storing (and of one event held while it arrives).
MAX_RECORDED_BYTES = 32 * 2**20
#: The ``error.code`` of a provider answer past :data:`MAX_ANSWER_BYTES`.
TOO_LARGE_CODE = "upstream_answer_too_large"


def too_large_message(model: str) -> str:
    """What the client is told: the model, and the limit it went past."""
    return (f"model {model!r}: the provider's answer is larger than the gateway's limit of "
            f"{MAX_ANSWER_BYTES // 2**20} MiB for an answer read whole; nothing was stored")
