"""TLS helpers shared by the http, tcp, tls and websocket collectors.

`client_context()` builds the client SSLContext a probe uses (verification on by default,
optional CA file, optional client certificate). `peer_info()` reads, after a handshake,
the negotiated TLS version and the earliest NotAfter across the certificates the peer
presented (like blackbox_exporter's probe_ssl_earliest_cert_expiry).
"""

from __future__ import annotations

import _ssl
import os
import ssl
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent.collectors.base import TlsLeaf
from agent.config.node import Node

_VERSION_NAMES = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The `tls:` block of an http, tcp, tls or websocket target."""

    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    min_version: str | None = None      # "TLS 1.2" ...


@lru_cache(maxsize=64)
def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """One SSLContext per distinct settings (building one costs ~1 ms of CPU)."""
    ctx = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.cert_file:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.min_version:
        ctx.minimum_version = {"TLS 1.0": ssl.TLSVersion.TLSv1, "TLS 1.1": ssl.TLSVersion.TLSv1_1,
                               "TLS 1.2": ssl.TLSVersion.TLSv1_2,
                               "TLS 1.3": ssl.TLSVersion.TLSv1_3}[settings.min_version]
    return ctx


TLS_VERSIONS = ("TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")


def peer_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str | None, float | None]:
    """(TLS version, earliest NotAfter as unix seconds) of an established connection."""
    if ssl_object is None:
        return None, None
    version = _VERSION_NAMES.get(ssl_object.version() or "", ssl_object.version())
    return version, earliest_expiry(ssl_object)


GO_ZERO_TIME = -62135596800.0      # Go's time.Time{}.Unix(): blackbox's chain expiry when nothing was verified


def leaf_of(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, verified: bool) -> TlsLeaf | None:
    """The peer's leaf certificate as blackbox reports it (probe_ssl_last_chain_info's labels), and the
    verified chain's expiry: the earliest NotAfter of the chain the peer sent when it was verified (Python
    before 3.13 does not expose the verified chain, which may add a root from the trust store), else Go's
    zero time, as blackbox reports an unverified connection (insecure_skip_verify)."""
    if ssl_object is None:
        return None
    ders = _chain_ders(ssl_object)
    if not ders:
        return None
    return _leaf(ders[0], earliest_expiry(ssl_object) if verified else GO_ZERO_TIME)


@lru_cache(maxsize=256)
def _leaf(der: bytes, chain_expiry: float | None) -> TlsLeaf | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = ",".join(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = ""
    return TlsLeaf(fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(), subject=cert.subject.rfc4514_string(),
                   issuer=cert.issuer.rfc4514_string(), dns_names=dns_names,
                   chain_expiry=GO_ZERO_TIME if chain_expiry is None else chain_expiry)


def earliest_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> float | None:
    ders = _chain_ders(ssl_object)
    expiries = []
    for der in ders:
        try:
            expiries.append(_not_after(der))
        except ValueError:
            continue
    return min(expiries) if expiries else None


@lru_cache(maxsize=256)
def _not_after(der: bytes) -> float:
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def _chain_ders(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """DER certificates the peer sent. Python 3.13 has this publicly; 3.10-3.12 have it on
    the private `_sslobj` (`_ssl.Certificate`). Falls back to the leaf alone."""
    inner = getattr(ssl_object, "_sslobj", None)
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(inner, "get_unverified_chain", None)
    if getter is not None:
        try:
            chain = getter() or []
            return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain]
        except (AttributeError, TypeError, ValueError, ssl.SSLError):
            pass
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def parse_tls(node: Node) -> TlsSettings:
    """Read a `tls:` block (schema.Node): verify, ca_file, cert_file, key_file, server_name, min_version."""
    settings = TlsSettings(
        verify=node.bool("verify", True),
        ca_file=_existing_file(node, "ca_file"),
        cert_file=_existing_file(node, "cert_file"),
        key_file=_existing_file(node, "key_file"),
        server_name=node.str("server_name"),
        min_version=node.str("min_version", choices=TLS_VERSIONS),
    )
    if settings.key_file and not settings.cert_file:
        node.error("key_file needs cert_file", "key_file")
    node.finish()
    return settings


def _existing_file(node: Node, key: str) -> str | None:
    path = node.str(key)
    if path is not None and not os.path.isfile(path):
        node.error(f"file not found: {path}", key)
        return None
    return path


# blackbox_exporter's (prometheus/common's) tls_config min_version names
BLACKBOX_TLS_VERSIONS = {"TLS10": "TLS 1.0", "TLS11": "TLS 1.1", "TLS12": "TLS 1.2", "TLS13": "TLS 1.3"}


def parse_blackbox_tls(node: Node) -> TlsSettings:
    """Read blackbox_exporter's `tls_config:` (prometheus/common 0.37's TLSConfig): insecure_skip_verify,
    ca_file, cert_file, key_file, server_name, min_version (TLS10 ... TLS13)."""
    min_version = node.str("min_version", choices=tuple(BLACKBOX_TLS_VERSIONS))
    settings = TlsSettings(
        verify=not node.bool("insecure_skip_verify", False),
        ca_file=_existing_file(node, "ca_file"),
        cert_file=_existing_file(node, "cert_file"),
        key_file=_existing_file(node, "key_file"),
        server_name=node.str("server_name"),
        min_version=BLACKBOX_TLS_VERSIONS.get(min_version or ""),
    )
    if settings.key_file and not settings.cert_file:
        node.error("key_file needs cert_file", "key_file")
    if settings.cert_file and not settings.key_file:
        node.error("cert_file needs key_file", "cert_file")
    node.finish()
    return settings
