"""Session-wide fixtures shared by several test packages."""

pytest_plugins = ["tests.support.redis_servers"]
