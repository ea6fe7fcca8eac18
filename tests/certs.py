"""Moved to tests/support/certs.py; this name stays until tests/test_collector_*.py import from there."""

from tests.support.certs import CertFiles, make_ca, make_cert

__all__ = ["CertFiles", "make_ca", "make_cert"]
