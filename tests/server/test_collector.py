"""server/collector.py: only a ``reprise serve`` process has its collector set for serving."""

from __future__ import annotations

import json
import subprocess
import sys

from reprise.server.collector import SERVE_PROCESS_ENV, YOUNG_THRESHOLD

_PROBE = """
import gc, json
from reprise.server.collector import settle_for_serving
before = gc.get_threshold()
done = settle_for_serving()
print(json.dumps({"done": done, "before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _probe(**env: str) -> dict[str, object]:
    import os

    clean = {k: v for k, v in os.environ.items() if k != SERVE_PROCESS_ENV}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_a_serve_process_freezes_what_is_loaded_and_collects_young_objects_less_often() -> None:
    result = _probe(**{SERVE_PROCESS_ENV: "1"})
    assert result["done"] is True
    assert result["after"] == [YOUNG_THRESHOLD, *result["before"][1:]]  # type: ignore[index]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1_000


def test_any_other_process_keeps_its_collector_as_it_is() -> None:
    result = _probe()
    assert result["done"] is False
    assert result["after"] == result["before"]
    assert result["frozen"] == 0
