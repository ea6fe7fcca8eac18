"""Moved to tests/support/dns_server.py; this name stays until tests/test_collector_dns.py imports from there."""

from tests.support.dns_server import DnsServer

__all__ = ["DnsServer"]
