"""The servers being compared, each started the way a user would start it.

- the stub upstream (``tests/support/stub_upstream.py``), the LLM provider;
- a trivial raw-ASGI app under uvicorn with Reprise's uvicorn options: the ceiling;
- Reprise, through its CLI (``reprise serve``), from this working tree;
- LiteLLM's proxy from its own virtualenv, on the same LiteLLM-format config.

Reprise and LiteLLM read the same config file: same model, same upstream, an
in-memory cache (``type: local``), a master key. Only loopback is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.load import Endpoint
from bench.procs import ProcessSet, Server, free_port, wait_ready

REPO = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-bench-master-key"
MODEL = "bench-model"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
# Reprise serves with these; the baseline must be served the same way to be a fair ceiling.
UVICORN_OPTIONS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--workers", "1"]
DEFAULT_LITELLM_VENV = REPO / "bench" / ".venv-litellm"

CONFIG_TEMPLATE = """\
# Written by bench/targets.py for one benchmark run; read by Reprise and LiteLLM alike.
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: sk-x
litellm_settings:
  cache: true
  cache_params:
    type: local
    ttl: 600
general_settings:
  master_key: {master_key}
"""


def write_gateway_config(path: Path, api_base: str) -> Path:
    path.write_text(CONFIG_TEMPLATE.format(model=MODEL, api_base=api_base, master_key=MASTER_KEY))
    return path


def endpoint_of(server: Server, headers: Mapping[str, str] = AUTH) -> Endpoint:
    return Endpoint(server.name, server.host, server.port, headers=dict(headers))


def _readiness_probes() -> list[tuple[str, Mapping[str, str]]]:
    return [("/health/readiness", AUTH), ("/v1/models", AUTH)]


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without proxies (loopback only), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def start_trivial(procs: ProcessSet, timeout: float = 30.0) -> Server:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "trivial_app:app",
        "--app-dir",
        str(REPO / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN_OPTIONS,
    ]
    server = procs.spawn("trivial-asgi", cmd, port, env=_clean_env())
    wait_ready(server, _readiness_probes(), timeout)
    return server


def reprise_command() -> list[str]:
    """The ``reprise`` console script of this Python if installed, else the same entry point.

    Not ``shutil.which``: a version-manager shim (pyenv) on PATH adds a shell
    script's start-up time that a real install does not have.
    """
    script = Path(sys.executable).parent / "reprise"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from reprise.cli.main import main; sys.exit(main())"]


def start_reprise(procs: ProcessSet, config: Path, timeout: float = 60.0) -> Server:
    port = free_port()
    # Log level warning: LiteLLM runs with LITELLM_LOG=ERROR, so neither pays for info logs.
    cmd = [
        *reprise_command(),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    # Benchmark this working tree even if another copy of reprise is installed.
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    server = procs.spawn("reprise", cmd, port, env=_clean_env(PYTHONPATH=pythonpath), cwd=REPO)
    wait_ready(server, _readiness_probes(), timeout)
    return server


def start_litellm(procs: ProcessSet, python: Path, config: Path, timeout: float = 180.0) -> Server:
    port = free_port()
    entry = python.parent / "litellm"
    launcher = (
        [str(entry)]
        if entry.exists()
        else [str(python), "-c", "from litellm.proxy.proxy_cli import run_server; run_server()"]
    )
    cmd = [*launcher, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = _clean_env(
        LITELLM_LOG="ERROR",
        LITELLM_TELEMETRY="False",
        # Use the bundled model cost map instead of fetching it from GitHub at start-up.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    env.pop("PYTHONPATH", None)
    server = procs.spawn("litellm", cmd, port, env=env, cwd=config.parent)
    wait_ready(server, _readiness_probes(), timeout)
    return server


def ensure_litellm_venv(python: Path) -> Path:
    """Return ``python``; if it is missing, create its venv and ``pip install 'litellm[proxy]'``.

    LiteLLM lives in its own venv so its many pinned dependencies never touch
    the environment Reprise is measured in.
    """
    if python.exists():
        return python
    venv = python.parent.parent
    print(f"creating {venv} and installing litellm[proxy] (a few minutes, once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "litellm[proxy]"], check=True)
    return python


def litellm_version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"
