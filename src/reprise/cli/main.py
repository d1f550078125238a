"""``reprise`` command line: ``serve``, ``config check``, ``cache`` inspection, ``semantic eval|calibrate``.

The CLI only translates argv into calls on the config loader, the server and the
cache; a bad config is reported as one line naming the key, with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from reprise.config import GatewayConfig, load_config
from reprise.config.models import CacheParams
from reprise.config.serving import check_serving
from reprise.errors import ConfigError
from reprise.server import key_store, key_store_file


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    config = load_config(args.config)  # fail fast, before any worker starts
    check_serving(config)  # closed by default (config/serving.py); each worker's app checks again
    _check_routes(config)
    key_store.prepare(config.general_settings.keys_file)  # create or convert it once; refuse a broken one
    from reprise.server.app import CONFIG_ENV, RepriseApp
    from reprise.server.collector import SERVE_PROCESS_ENV
    from reprise.server.protocol import ConnectionLimits, protocol_class

    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[SERVE_PROCESS_ENV] = "1"  # this process and its workers are the gateway's (server/collector.py)
    limits = ConnectionLimits.from_settings(config.general_settings)  # resolved once, for every worker
    options = dict(
        host=args.host,
        port=args.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=protocol_class(limits),  # httptools with bounded heads, deadlines and a connection cap
        ws="none",  # no route speaks WebSocket; an upgrade must not escape those bounds
        access_log=False,  # Reprise writes its own request log (observability/logs.py)
        proxy_headers=False,  # nothing reads the client address; saves a middleware call per request
        server_header=False,
        log_level=args.log_level,
        lifespan="on",
        timeout_keep_alive=config.general_settings.keep_alive_timeout,
    )
    logging.getLogger("reprise").info(
        "connection limits per process: %d connections, head %d bytes / %d fields in %g s, body in %g s, "
        "answers read within %g s, %d MB unread at most",
        limits.max_connections, limits.max_header_bytes, limits.max_headers, limits.head_timeout,
        limits.body_timeout, limits.send_timeout, limits.max_unsent_bytes >> 20,
    )
    if args.workers > 1:
        params = config.cache_params if config.cache_enabled else None
        _check_workers(params, args.workers)
        from reprise.backends.machine import WORKERS_DIR_ENV, shared_tier_directory

        # One cache for the machine: the workers share a tier in this server's own directory.
        need = params.max_bytes if params is not None and params.type == "local" else 0
        with shared_tier_directory(need_bytes=need) as shared:
            os.environ[WORKERS_DIR_ENV] = str(shared)
            uvicorn.run("reprise.server.app:create_app", factory=True, workers=args.workers, **options)
    else:
        from reprise.backends.machine import WORKERS_DIR_ENV

        os.environ.pop(WORKERS_DIR_ENV, None)  # one process: its cache is its own
        uvicorn.run(RepriseApp(config), **options)
    return 0


def _check_workers(params: CacheParams | None, workers: int) -> None:
    """Refuse what several workers cannot share: the embedded vector index of ``local-semantic``.

    Its log has one owner: each worker would keep its own index (a paraphrase sent right after
    an answer missed whenever it reached the other worker) and each worker's compaction
    replaced the file under the others, whose vectors were then lost (found from outside:
    40 prompts stored, 16 left in the log). Refused rather than warned: data is lost.
    """
    if params is not None and params.type == "local-semantic":
        raise ConfigError(
            f"type local-semantic keeps its vector index in one process and cannot serve --workers {workers}: "
            "run one worker (it serves a cached hit in well under a millisecond), or use redis-semantic "
            "or qdrant-semantic, whose index every worker shares", "litellm_settings.cache_params.type")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check_routes(config: GatewayConfig) -> None:
    """The model_list checks ``serve`` makes (providers, api_base, aliases): ConfigError naming the key."""
    from reprise.server.routing import build_routes

    build_routes(config)


def _config_check(args: argparse.Namespace) -> int:
    """The same validation as ``serve`` (a blank secret, a broken key store: exit 2), without side effects."""
    config = load_config(args.config)
    check_serving(config)
    _check_routes(config)
    from reprise.server.sdk_upstream import sdk_keys

    passed = set(sdk_keys(config))
    for key in config.ignored_keys:
        print(f"note: {key} is passed to the LiteLLM SDK" if key in passed
              else f"warning: {key} is not used by Reprise (ignored)")
    if config.litellm_settings.cache_type_note:
        print(f"note: {config.litellm_settings.cache_type_note}")
    store = key_store_file.inspect(config.general_settings.keys_file)
    if store is not None:
        print(f"ok: {store}")
    models = ", ".join(config.model_names()) or "none"
    cache = config.cache_params.type if config.cache_enabled and config.cache_params else "off"
    print(f"ok: {len(config.model_list)} deployments ({models}); cache: {cache}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from reprise.cli.cache_commands import run_cache_command

    return asyncio.run(run_cache_command(args))


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--limit 0`` or ``-3`` is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (1 or more)")
    return value


_KEYED_ACTIONS = frozenset({"get", "rm"})


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``reprise`` parser and its ``cache`` subparser (parsed on its own: see ``parse_args``)."""
    parser = argparse.ArgumentParser(prog="reprise", description="Caching gateway for LLM APIs")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible gateway")
    serve.add_argument("--config", required=True, help="LiteLLM-format config.yaml")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=4000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and list ignored keys")
    check.add_argument("--config", required=True)
    check.set_defaults(func=_config_check)

    cache = sub.add_parser("cache", help="inspect the configured cache backend")
    cache.add_argument("action", choices=["stats", "ls", "get", "rm", "flush"])
    cache.add_argument("keys", nargs="*", help="keys for get / rm")
    cache.add_argument("--config", required=True)
    cache.add_argument("--namespace", default=None, help="limit ls / flush to a namespace")
    cache.add_argument("--limit", type=_positive_int, default=50, help="entries shown by ls (1 or more)")
    cache.add_argument("--url", default=None, help="a running gateway's base URL: use its admin API")
    cache.add_argument("--key", default=None, help="master key for --url (default: config or $REPRISE_MASTER_KEY)")
    cache.add_argument("--yes", action="store_true", help="flush without asking")
    cache.add_argument("--json", action="store_true", help="machine-readable output")
    cache.set_defaults(func=_cache)

    from reprise.cli import semantic_commands  # imports no model until a command runs

    semantic_commands.add_parser(sub)
    return parser, cache


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """argv to a namespace; ``cache`` options and keys may come in any order.

    ``reprise cache get --config FILE KEY`` reads naturally from the synopsis, but a
    ``nargs="*"`` positional is consumed (empty) by argparse right after the action,
    leaving KEY "unrecognized". The ``cache`` parser therefore parses intermixed
    (options first, then every positional), which argparse cannot do for a parser
    that has subcommands, hence this dispatch on the first word.
    """
    parser, cache = build_parsers()
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] != ["cache"]:
        return parser.parse_args(words)
    args = cache.parse_intermixed_args(words[1:], argparse.Namespace(command="cache"))
    if args.action in _KEYED_ACTIONS and not args.keys:
        cache.error(f"{args.action} needs at least one KEY")
    if args.action not in _KEYED_ACTIONS and args.keys:
        cache.error(f"{args.action} takes no KEY (got {' '.join(args.keys)})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"reprise: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
