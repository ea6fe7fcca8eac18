"""Moved to tests/support/collector_config.py; this name stays until tests/test_collector_*.py import from there."""

from tests.support.collector_config import parse_kind

__all__ = ["parse_kind"]
