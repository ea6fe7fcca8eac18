"""The `http` collector: one HTTP(S) request per probe, like blackbox_exporter's http prober.

Each request runs on a fresh connection through the lean HTTP/1.1 client in `http_wire`
(`Connection: close`, no pooling). Redirects are followed on fresh connections up to
`max_redirects`. Phase durations are SUMMED over every request of the probe (as
blackbox_exporter does); status, lengths, HTTP version and TLS facts describe the final
response. Option names follow blackbox_exporter where it has them.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import time
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import ClassVar
from urllib.parse import quote, urljoin, urlsplit

from agent.collectors.base import PhaseTrace, ProbeFailed, ProbeResult, ProbeTarget, Reason, is_ip_literal
from agent.collectors.gosyntax import go_regex
from agent.collectors.http_wire import Exchange, Response, encode_request, exchange
from agent.collectors.ipproto import IpOptions, parse_ip_options
from agent.collectors.tlsinfo import TlsSettings, client_context, parse_blackbox_tls, parse_tls
from agent.config.node import Node, join

KIND = "http"
USER_AGENT = "loom-agent"
DEFAULT_BODY_SIZE_LIMIT = 10 * 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTTP_VERSIONS = ("HTTP/1.0", "HTTP/1.1", "HTTP/2.0")     # HTTP/2.0 accepted in configs, never spoken
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_OWN_HEADERS = frozenset({"host", "connection", "content-length", "transfer-encoding"})
_SAFE_TARGET = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Options:
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    valid_status_codes: tuple[int, ...] = ()             # empty: any 2xx
    valid_http_versions: tuple[str, ...] = ()            # empty: any
    fail_if_body_matches_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_body_not_matches_regexp: tuple[re.Pattern[str], ...] = ()
    follow_redirects: bool = True
    max_redirects: int = 10
    tls: TlsSettings = TlsSettings()
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = field(default=None, repr=False)
    authorization_type: str = "Bearer"                   # blackbox's authorization.type, for bearer_token
    # blackbox's form: a redirect not followed counts as one (probe_http_redirects 1) and its body is not read
    # (uncompressed length 0), as Go's client reports it
    blackbox_redirects: bool = False
    body_size_limit: int = DEFAULT_BODY_SIZE_LIMIT       # bytes; 0 = no limit
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    ip: IpOptions = IpOptions()
    fail_if_header_matches: tuple[HeaderMatch, ...] = ()
    fail_if_header_not_matches: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """One of blackbox's `fail_if_header_matches` / `fail_if_header_not_matches` entries."""

    header: str                     # lower case
    regexp: re.Pattern[str]
    allow_missing: bool = False


# blackbox_exporter 0.23 http keys (HTTPProbe and prometheus/common 0.37's HTTPClientConfig) the agent
# does not implement: an error naming the key, never silently ignored
BLACKBOX_REFUSED = ("compression", "proxy_url", "skip_resolve_phase_with_proxy", "oauth2",
                    "proxy_connect_header", "no_proxy", "proxy_from_environment")
REFUSED_MESSAGE = "not supported by loom-agent (blackbox_exporter key)"


def parse_options(node: Node, blackbox: bool = False) -> Options:
    """Read the http keys of a target/module mapping, or with `blackbox` a module's `http:` block as
    blackbox_exporter 0.23 reads it (tls_config, no_follow_redirects, fail_if_header_*, Go regexps, sizes
    such as 1MB); errors are recorded on `node`."""
    basic_auth = _basic_auth(node)
    bearer_token = node.secret("bearer_token")
    if basic_auth is not None and bearer_token is not None:
        node.error("set either basic_auth or bearer_token, not both", "bearer_token")
    authorization_type = "Bearer"
    if blackbox and node.has("authorization"):
        authorization_type, credentials = _authorization(node)
        if basic_auth is not None or bearer_token is not None:
            node.error("set only one of basic_auth, bearer_token or authorization", "authorization")
        bearer_token = credentials
    if blackbox:
        regex_list = _go_regex_list
        tls = parse_blackbox_tls(node.child("tls_config"))
        follow_redirects = _blackbox_follow_redirects(node)
        max_redirects = 10
        body_size_limit = _blackbox_size(node, "body_size_limit")
        _refuse(node)
    else:
        regex_list = _regex_list
        tls = parse_tls(node.child("tls"))
        follow_redirects = node.bool("follow_redirects", True)
        max_redirects = node.int("max_redirects", 10, minimum=0)
        body_size_limit = node.int("body_size_limit", DEFAULT_BODY_SIZE_LIMIT, minimum=0)
    return Options(
        method=_method(node),
        headers=_headers(node),
        body=node.str("body"),
        valid_status_codes=_status_codes(node),
        valid_http_versions=_http_versions(node),
        fail_if_body_matches_regexp=regex_list(node, "fail_if_body_matches_regexp"),
        fail_if_body_not_matches_regexp=regex_list(node, "fail_if_body_not_matches_regexp"),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        tls=tls,
        basic_auth=basic_auth,
        bearer_token=bearer_token,
        authorization_type=authorization_type,
        body_size_limit=body_size_limit,
        fail_if_ssl=node.bool("fail_if_ssl", False),
        fail_if_not_ssl=node.bool("fail_if_not_ssl", False),
        ip=parse_ip_options(node),
        fail_if_header_matches=_header_matches(node, "fail_if_header_matches") if blackbox else (),
        fail_if_header_not_matches=_header_matches(node, "fail_if_header_not_matches") if blackbox else (),
        blackbox_redirects=blackbox,
    )


def _refuse(node: Node) -> None:
    for key in BLACKBOX_REFUSED:
        if node.raw(key) is not None:
            node.error(REFUSED_MESSAGE, key)
    if node.bool("enable_http2", False):
        node.error("not supported by loom-agent (blackbox_exporter key): the agent speaks HTTP/1.1; "
                   "set enable_http2: false", "enable_http2")


def _authorization(node: Node) -> tuple[str, str | None]:
    """blackbox's (prometheus/common's) `authorization: {type: Bearer, credentials | credentials_file}`."""
    child = node.child("authorization")
    kind = child.str("type", "Bearer")
    if not _TOKEN.match(kind) or kind.lower() == "basic":
        child.error(f"must be an HTTP authentication scheme other than Basic (use basic_auth), got {kind!r}", "type")
        kind = "Bearer"
    credentials = child.secret("credentials")
    child.finish()
    return kind, credentials


def _regex_list(node: Node, key: str) -> tuple[re.Pattern[str], ...]:
    return node.regex_list(key)


def _go_regex_list(node: Node, key: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for i, text in enumerate(node.str_list(key)):
        try:
            out.append(go_regex(text))
        except re.error as exc:
            node.error(f"invalid regular expression: {exc}", f"{key}[{i}]")
    return tuple(out)


def _blackbox_follow_redirects(node: Node) -> bool:
    if node.has("no_follow_redirects") and node.has("follow_redirects"):
        node.error("set either follow_redirects or no_follow_redirects (deprecated), not both",
                   "no_follow_redirects")
    if node.has("no_follow_redirects"):
        return not node.bool("no_follow_redirects", False)
    return node.bool("follow_redirects", True)


_SIZE = re.compile(r"^(\d+)\s*([KMGTPE]?)(i?B)?$")


def _blackbox_size(node: Node, key: str) -> int:
    """blackbox's units.Base2Bytes: 1024, "512KB", "10MiB", "1GB" (KB = KiB = 1024 bytes). Absent: the
    agent's bound (blackbox has none), so a probe's memory stays bounded."""
    value = node.raw(key)
    if value is None:
        return DEFAULT_BODY_SIZE_LIMIT
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match is None or (not match.group(3) and match.group(2)):
        node.error(f"must be a size such as 1024, 512KB or 10MiB, got {value!r}", key)
        return DEFAULT_BODY_SIZE_LIMIT
    return int(match.group(1)) * 1024 ** " KMGTPE".index(match.group(2) or " ")


def _header_matches(node: Node, key: str) -> tuple[HeaderMatch, ...]:
    out = []
    for index, item in node.items(key):
        entry = Node(item, join(join(node.path, key), index), node.errors)
        header = entry.str("header", required=True)
        text = entry.str("regexp", required=True)
        allow_missing = entry.bool("allow_missing", False)
        entry.finish()
        if header is None or text is None:
            continue
        try:
            out.append(HeaderMatch(header.lower(), go_regex(text), allow_missing))
        except re.error as exc:
            entry.error(f"invalid regular expression: {exc}", "regexp")
    return tuple(out)


def check_url(url: str) -> str | None:
    """The error message for a target url this collector cannot probe, or None."""
    try:
        parse_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _method(node: Node) -> str:
    method = node.str("method", "GET")
    if not _TOKEN.match(method):
        node.error(f"must be an HTTP method such as GET or POST, got {method!r}", "method")
        return "GET"
    return method


def _headers(node: Node) -> tuple[tuple[str, str], ...]:
    out = []
    for name, value in node.str_map("headers").items():
        if not _TOKEN.match(name):
            node.error("is not a valid HTTP header name", f"headers.{name}")
        elif any(c in value for c in "\r\n\0"):
            node.error("must not contain line breaks or NUL", f"headers.{name}")
        else:
            out.append((name, value))
    return tuple(out)


def _status_codes(node: Node) -> tuple[int, ...]:
    codes = []
    for i, code in node.items("valid_status_codes"):
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            node.error(f"must be an HTTP status code from 100 to 599, got {code!r}", f"valid_status_codes[{i}]")
        else:
            codes.append(code)
    return tuple(codes)


def _http_versions(node: Node) -> tuple[str, ...]:
    versions = node.str_list("valid_http_versions")
    for i, version in enumerate(versions):
        if version not in HTTP_VERSIONS:
            node.error(f"must be one of {', '.join(HTTP_VERSIONS)}, got {version!r}", f"valid_http_versions[{i}]")
    return versions


def _basic_auth(node: Node) -> BasicAuth | None:
    if not node.has("basic_auth"):
        return None
    child = node.child("basic_auth")
    username = child.str("username", "", required=True)
    password = child.secret("password") or ""
    child.finish()
    return BasicAuth(username, password)


@dataclass(frozen=True, slots=True)
class Url:
    text: str
    tls: bool               # https
    host: str               # no brackets around IPv6
    port: int
    target: str             # path?query, as sent in the request line
    host_header: str        # host[:port], port omitted when it is the scheme's default
    is_ip: bool


@lru_cache(maxsize=1024)
def parse_url(text: str) -> Url:
    """An http:// or https:// URL -> Url. Raises ValueError naming the problem."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (use http or https)")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL {text!r} has no host")
    port = parts.port               # ValueError when out of range / not a number
    default_port = 443 if scheme == "https" else 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii() or not target.isprintable() or " " in target:
        target = quote(target, safe=_SAFE_TARGET)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (None, default_port) else f"{shown}:{port}"
    return Url(text, scheme == "https", host, port or default_port, target, host_header, is_ip_literal(host))



@lru_cache(maxsize=512)
def _header_block(options: Options, with_auth: bool) -> tuple[bytes, str | None]:
    """(encoded header lines except Host/Connection/Content-Length, the user's Host header)."""
    names = {name.lower() for name, _ in options.headers}
    lines = [] if "user-agent" in names else [f"User-Agent: {USER_AGENT}"]
    if "accept" not in names:
        lines.append("Accept: */*")
    host = None
    for name, value in options.headers:
        if name.lower() == "host":
            host = value
        elif name.lower() not in _OWN_HEADERS and not (name.lower() == "authorization" and not with_auth):
            lines.append(f"{name}: {value}")
    if with_auth and options.basic_auth is not None:
        pair = f"{options.basic_auth.username}:{options.basic_auth.password}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(pair).decode()}")
    elif with_auth and options.bearer_token is not None:
        lines.append(f"Authorization: {options.authorization_type} {options.bearer_token}")
    return "".join(f"{line}\r\n" for line in lines).encode(), host


@dataclass(slots=True)
class _Fetch:
    """What the http probe learnt beside its PhaseTrace: the latest response (partial when the body
    failed) and the redirects followed."""

    response: Response | None = None
    redirects: int = 0
    body_unread: bool = False       # blackbox's count of a redirect not followed: no body length

    def keep(self, response: Response | None) -> None:
        self.response = response


class Collector:
    kind: ClassVar[str] = KIND

    async def probe(self, target: ProbeTarget, deadline: float) -> ProbeResult:
        options: Options = target.options
        trace, fetch = PhaseTrace(), _Fetch()
        try:
            async with asyncio.timeout(deadline - time.monotonic()) as scope:
                await _follow(target.url or "", options, trace, fetch)
        except (ProbeFailed, OSError) as exc:       # TimeoutError is an OSError
            if isinstance(exc, TimeoutError) and scope.expired():
                return _result(trace, fetch, trace.timeout())
            return _result(trace, fetch, _failure(exc, trace.phase))
        assert fetch.response is not None           # _follow returned: the final response is complete
        return _result(trace, fetch, _check(fetch.response, options))

    async def close(self) -> None:
        return None


async def _follow(url_text: str, options: Options, trace: PhaseTrace, fetch: _Fetch) -> None:
    """Request the URL, then each redirect target; the last response lands in fetch.response."""
    first = url = _url(url_text)
    method, body = options.method, None if options.body is None else options.body.encode()
    if body is None and method in ("POST", "PUT", "PATCH"):
        body = b""
    visited = {(method, url.text)}
    while True:
        response = await _fetch(url, method, body, options, trace, fetch, first)
        location = response.headers.get(b"location")
        if response.status not in REDIRECT_STATUSES or location is None:
            return
        if not options.follow_redirects:
            if options.blackbox_redirects:
                fetch.redirects, fetch.body_unread = fetch.redirects + 1, True
            return
        if fetch.redirects >= options.max_redirects:
            raise ProbeFailed(Reason.REDIRECT, f"stopped after {fetch.redirects} redirects (max_redirects)")
        url = _url(urljoin(url.text, location.decode("latin-1")))
        method, body = _redirected_method(response.status, method, body)
        if (method, url.text) in visited:
            raise ProbeFailed(Reason.REDIRECT, f"redirect loop: {method} {url.text} was requested before")
        visited.add((method, url.text))
        fetch.redirects += 1
        trace.log(f"redirect {response.status} to {url.text}")


def _url(text: str) -> Url:
    try:
        return parse_url(text)
    except ValueError as exc:
        raise ProbeFailed(Reason.PROTOCOL, f"invalid URL {text!r}: {exc}") from None


def _redirected_method(status: int, method: str, body: bytes | None) -> tuple[str, bytes | None]:
    """303 turns anything but HEAD into GET; 301/302 turn POST into GET; 307/308 keep both."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, body


async def _fetch(url: Url, method: str, body: bytes | None, options: Options, trace: PhaseTrace, fetch: _Fetch,
                 first: Url) -> Response:
    same_host = url.host == first.host and url.port == first.port
    headers, user_host = _header_block(options, same_host)
    host = user_host if user_host is not None and url is first else url.host_header
    how = Exchange(
        host=url.host, port=url.port, is_ip=url.is_ip,
        request=encode_request(method, url.target, host, headers, body),
        tls=client_context(options.tls) if url.tls else None,
        server_name=options.tls.server_name or _host_name(user_host if url is first else None),
        head_request=method == "HEAD",
        keep_body=bool(options.fail_if_body_matches_regexp or options.fail_if_body_not_matches_regexp),
        body_limit=options.body_size_limit,
        ip=options.ip,
    )
    trace.log(f"{method} {url.text}")
    fetch.response = None               # a redirect hop that fails before its response reports none
    return await exchange(how, trace, fetch.keep)


def _host_name(host_header: str | None) -> str | None:
    """The TLS server name a Host header implies (blackbox: the Host header's value, when tls_config has no
    server_name, so a probe of an IP address with a virtual host's Host header verifies that host)."""
    if not host_header:
        return None
    try:
        return parse_url(f"http://{host_header}/").host
    except ValueError:
        return None


def with_hostname(options: Options, hostname: str) -> Options:
    """/probe's `hostname` parameter, as blackbox_exporter's: the Host header (and so the TLS server name)
    of this probe. Raises ValueError when the module sets another Host header, or for an invalid name."""
    if not hostname or any(c in hostname for c in "\r\n\0 /@"):
        raise ValueError(f"hostname: not a valid host name: {hostname!r}")
    for name, value in options.headers:
        if name.lower() == "host" and value != hostname:
            raise ValueError(f"host header defined both in module configuration ({value}) and with URL-parameter "
                             f"'hostname' ({hostname})")
    headers = tuple((n, v) for n, v in options.headers if n.lower() != "host") + (("Host", hostname),)
    return replace(options, headers=headers)


def _failure(exc: ProbeFailed | OSError, phase: str) -> ProbeFailed:
    """The failure for an exception raised during `phase`."""
    if isinstance(exc, ProbeFailed):
        return exc
    if isinstance(exc, socket.gaierror):       # an IP literal the system still refused to take
        return ProbeFailed(Reason.RESOLVE, f"resolve: {exc.strerror or exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeFailed(Reason.TLS, f"certificate verify failed: {exc.verify_message or exc}")
    if isinstance(exc, ssl.SSLError):
        return ProbeFailed(Reason.TLS, f"TLS error: {exc.reason or exc}")
    reason = {"resolve": Reason.RESOLVE, "tls": Reason.TLS}.get(phase, Reason.CONNECT)
    return ProbeFailed(reason, f"{phase}: {exc.strerror or str(exc) or type(exc).__name__}")


def _check(response: Response, options: Options) -> ProbeFailed | None:
    """Why the final response fails the target's expectations, or None."""
    status = response.status
    if not (status in options.valid_status_codes if options.valid_status_codes else 200 <= status < 300):
        return ProbeFailed(Reason.STATUS, f"status {status} is not valid")
    if options.valid_http_versions and response.version_text not in options.valid_http_versions:
        return ProbeFailed(Reason.PROTOCOL, f"{response.version_text} is not in valid_http_versions")
    if options.fail_if_ssl and response.tls_version is not None:
        return ProbeFailed(Reason.TLS, "final response came over TLS (fail_if_ssl)")
    if options.fail_if_not_ssl and response.tls_version is None:
        return ProbeFailed(Reason.TLS, "final response did not come over TLS (fail_if_not_ssl)")
    if problem := _check_headers(response.headers, options):
        return problem
    if response.body is not None:
        return _check_body(response.body.decode("utf-8", "replace"), options)
    return None


def _check_headers(headers: dict[bytes, bytes], options: Options) -> ProbeFailed | None:
    """blackbox's header checks: a missing header fails unless allow_missing; a matching value fails
    `fail_if_header_matches`, no matching value fails `fail_if_header_not_matches`. (Repeated headers are
    read as one value joined by ", ".)"""
    for spec, must_match in [*((m, False) for m in options.fail_if_header_matches),
                             *((m, True) for m in options.fail_if_header_not_matches)]:
        value = headers.get(spec.header.encode("latin-1"))
        if value is None:
            if spec.allow_missing:
                continue
            return ProbeFailed(Reason.BODY, f"header {spec.header!r} is missing")
        if bool(spec.regexp.search(value.decode("latin-1"))) != must_match:
            verb = "did not match" if must_match else "matched"
            return ProbeFailed(Reason.BODY, f"header {spec.header!r} {verb} {spec.regexp.pattern!r}")
    return None


def _check_body(text: str, options: Options) -> ProbeFailed | None:
    for pattern in options.fail_if_body_matches_regexp:
        if pattern.search(text):
            return ProbeFailed(Reason.BODY, f"body matched {pattern.pattern!r}")
    for pattern in options.fail_if_body_not_matches_regexp:
        if not pattern.search(text):
            return ProbeFailed(Reason.BODY, f"body did not match {pattern.pattern!r}")
    return None


def _result(trace: PhaseTrace, fetch: _Fetch, failure: ProbeFailed | None) -> ProbeResult:
    """The result, with the final (or partial) response's facts and its TLS facts, not the first hop's."""
    if failure is None:
        trace.log("probe succeeded")
    response = fetch.response
    if response is None:
        return trace.result(failure, redirects=fetch.redirects)
    return trace.result(failure, status_code=response.status, content_length=response.content_length,
                        body_length=0 if fetch.body_unread else response.body_length, http_version=response.version,
                        redirects=fetch.redirects, tls_version=response.tls_version,
                        cert_expiry=response.cert_expiry, tls_leaf=response.tls_leaf,
                        last_modified=last_modified(response.headers.get(b"last-modified")))


def last_modified(value: bytes | None) -> float | None:
    """A Last-Modified header as unix seconds (the HTTP date forms Go's http.ParseTime reads), or None."""
    if not value:
        return None
    try:
        return float(int(parsedate_to_datetime(value.decode("latin-1")).timestamp()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
