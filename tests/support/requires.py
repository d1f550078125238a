"""Fail, never skip, when a test's optional dependency is missing, and say how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require(module: str, reason: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"missing {module!r}: {reason} (scripts/setup installs every test dependency)", pytrace=False)
