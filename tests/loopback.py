"""Moved to tests/support/loopback.py; this name stays until tests/test_collector_*.py import from there."""

from tests.support.loopback import Handler, serve

__all__ = ["Handler", "serve"]
