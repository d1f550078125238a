"""Session-wide fixtures shared by several test packages."""

pytest_plugins = ["tests.support.redis_servers", "tests.support.redis_search", "tests.support.object_stores"]
