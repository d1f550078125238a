"""``reprise cache stats|ls|get|rm|flush``: the cache from a terminal.

Two ways in. By default the command opens the configured backend itself, which is
what a shared store is for (``disk`` now; Redis and object stores alike): no
server needs to run. The ``local`` store lives inside a server process, so there
the command says so and points to ``--url``, which talks to a running gateway's
admin API instead (the master key comes from ``--key``, ``$REPRISE_MASTER_KEY`` or
the config). Output is a table for people or ``--json`` for scripts; progress of
long scans and flushes goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import orjson

from reprise.backends.base import Backend
from reprise.backends.registry import load_backend_class
from reprise.cli.cache_remote import AdminClient
from reprise.config import load_config
from reprise.errors import RepriseError
from reprise.observability import inventory


class ProgressLine:
    """``done/total`` on stderr: redrawn in place on a terminal, a line every 2 s otherwise."""

    def __init__(self, verb: str, stream: Any = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        of = f"/{total}" if total is not None else ""
        pct = f" ({done * 100 // total}%)" if total else ""
        text = f"{self.verb} {done}{of} entries{pct}, {rate:,.0f}/s"
        self.stream.write(("\r" + text) if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")


def _emit(data: Any, as_json: bool, text: str) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else text)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _table(entries: list[dict[str, Any]]) -> str:
    rows = [("KEY", "MODEL", "AGE", "TTL", "SIZE", "HITS", "PREVIEW")]
    for e in entries:
        preview = (e.get("preview") or "").replace("\n", " ")
        rows.append((e["key"], str(e.get("model") or "-"), _age(e["age_s"]), _age(e["ttl_left_s"]),
                     str(e["size_bytes"]), str(e["hit_count"]), preview[:40]))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[6] for r in rows)


def _summary_text(s: dict[str, Any]) -> str:
    lines = [f"backend: {s['backend']}", f"entries: {s['entries']}", f"bytes: {s['bytes']}"]
    for field in ("namespaces", "kinds", "models"):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(s[field].items())) or "-"
        lines.append(f"{field}: {counts}")
    return "\n".join(lines)


def _stats_text(s: dict[str, Any]) -> str:
    t = s["totals"]
    lines = [f"backend: {s['backend']} (server pid {s['process']['pid']}, up {_age(s['process']['uptime_s'])})"]
    lines += [f"{k}: {v}" for k, v in t.items()]
    return "\n".join(lines)


async def run_cache_command(args: argparse.Namespace) -> int:
    """Entry point of ``reprise cache``; returns the exit status."""
    config = load_config(args.config)
    url = getattr(args, "url", None)
    try:
        if url:
            key = getattr(args, "key", None) or os.environ.get("REPRISE_MASTER_KEY")
            master = config.general_settings.master_key
            if key is None and master is not None:
                key = master.get_secret_value()
            async with AdminClient(url, key) as client:
                return await _remote(client, args)
        params = config.cache_params
        if not config.cache_enabled or params is None:
            print("reprise: caching is off in this config (litellm_settings.cache)", file=sys.stderr)
            return 2
        backend: Backend = load_backend_class(params.type).from_params(params)
        try:
            if not backend.capabilities.shared:
                print(f"reprise: the {params.type!r} cache lives inside the server process, so this command "
                      "cannot see it; ask the running server instead: add --url http://HOST:PORT "
                      "(admin API, master key from the config, --key or $REPRISE_MASTER_KEY)", file=sys.stderr)
                return 2
            return await _local(backend, args)
        finally:
            await backend.aclose()
    except RepriseError as exc:
        print(f"reprise: {exc}", file=sys.stderr)
        return 1


def _confirmed(args: argparse.Namespace, what: str) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        print(f"reprise: refusing to flush {what} without --yes", file=sys.stderr)
        return False
    return input(f"flush {what}? [y/N] ").strip().lower() in {"y", "yes"}


async def _local(backend: Backend, args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    what = f"namespace {args.namespace!r}" if args.namespace else "the whole cache"
    if args.action == "stats":
        progress = ProgressLine("scanned")
        summary = await inventory.summarize(backend, args.namespace, progress)
        progress.close()
        _emit(summary, as_json, _summary_text(summary))
    elif args.action == "ls":
        listing = await inventory.recent_entries(backend, args.namespace, args.limit, scan=1_000_000)
        _emit(listing, as_json, _table(listing["entries"]))
    elif args.action == "get":
        return await _get_each(args, [await inventory.entry(backend, key) for key in args.keys])
    elif args.action == "rm":
        deleted = await inventory.delete_keys(backend, args.keys)
        _emit({"deleted": deleted}, as_json, f"deleted {deleted} of {len(args.keys)} keys")
        return 0 if deleted == len(args.keys) else 1
    elif args.action == "flush":
        if not _confirmed(args, what):
            return 1
        progress = ProgressLine("deleted")
        removed = await inventory.flush(backend, args.namespace, progress)
        progress.close()
        _emit({"deleted": removed}, as_json, f"flushed {what}: {removed} entries removed")
    return 0


async def _get_each(args: argparse.Namespace, found: list[dict[str, Any] | None]) -> int:
    missing = [key for key, view in zip(args.keys, found, strict=True) if view is None]
    for key in missing:
        print(f"reprise: no live entry {key}", file=sys.stderr)
    views = [view for view in found if view is not None]
    if views:
        print(orjson.dumps(views if len(views) > 1 else views[0], option=orjson.OPT_INDENT_2).decode())
    return 1 if missing or not args.keys else 0


async def _remote(client: AdminClient, args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    if args.action == "stats":
        stats = await client.get("/cache/stats")
        _emit(stats, as_json, _stats_text(stats))
    elif args.action == "ls":
        query = {"limit": str(args.limit), **({"namespace": args.namespace} if args.namespace else {})}
        listing = await client.get("/cache/entries", query)
        _emit(listing, as_json, _table(listing["entries"]))
    elif args.action == "get":
        return await _get_each(args, [await client.get_entry(key) for key in args.keys])
    elif args.action == "rm":
        deleted = (await client.post("/cache/delete", {"keys": args.keys}))["deleted"]
        _emit({"deleted": deleted}, as_json, f"deleted {deleted} of {len(args.keys)} keys")
        return 0 if deleted == len(args.keys) else 1
    elif args.action == "flush":
        what = f"namespace {args.namespace!r}" if args.namespace else "the whole cache"
        if not _confirmed(args, what):
            return 1
        print(f"flushing {what} on {client.url} ...", file=sys.stderr)
        result = await client.post("/cache/flushall", {"namespace": args.namespace} if args.namespace else {})
        _emit(result, as_json, f"flushed {what}: {result['deleted']} entries removed")
    return 0
