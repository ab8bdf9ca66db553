"""Sending one signed webhook request: which URLs are allowed, where they really point, the signature, the HTTP call.

Only http(s) URLs without credentials. The host is resolved and every address it resolves to must be public (not
loopback, private, link-local, shared, multicast, reserved or unspecified) unless the operator sets
``WEBHOOKS_ALLOW_PRIVATE``. The check runs when a webhook is saved and again before every attempt, and the request then
goes to the address just checked (the URL's host stays in the Host header and in TLS's server name and certificate
check), so a name that resolves elsewhere a second later (DNS rebinding) cannot steer the request inside. Redirects are
not followed, environment proxies are not used, and the timeout is short (``WEBHOOKS_TIMEOUT_SECONDS``).

Signature: ``X-Synthstudio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; a receiver
recomputes it over the raw body and refuses old timestamps (replays).
"""
import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx2
from django.conf import settings

SIGNATURE_HEADER = "X-Synthstudio-Signature"
MAX_URL_LENGTH = 2000
EXCERPT_BYTES = 500
USER_AGENT = "synthstudio-webhooks/1"
MAX_ADDRESSES = 4
NO_CONNECTION = "Could not connect"


class UnsafeURL(ValueError):
    """A URL a webhook may not use, with a sentence saying why."""


@dataclass(frozen=True)
class Target:
    url: str  # the URL as the lead wrote it
    host: str
    port: int
    scheme: str
    addresses: tuple[str, ...]  # every address the host resolved to, all checked


@dataclass(frozen=True)
class Outcome:
    response_code: int | None
    latency_ms: int | None
    error: str
    excerpt: str

    @property
    def ok(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def _parts(url: str):
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"This is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host name.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("Credentials in the URL are not allowed; the receiver checks the signature instead.")
    return parts, port or (443 if parts.scheme == "https" else 80)


def _refusal(address: str) -> str | None:
    """Why ``address`` may not receive webhooks, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not public"
    return None


def url_target(url: str) -> Target:
    """Resolve the URL's host and check every address; raise UnsafeURL saying which address and why."""
    parts, port = _parts(url)
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host} could not be resolved ({exc}).") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeURL(f"The host {host} resolved to no address.")
    if not settings.WEBHOOKS_ALLOW_PRIVATE:
        for address in addresses:
            reason = _refusal(address)
            if reason:
                raise UnsafeURL(f"The host {host} resolves to {address}, a {reason} address; webhooks go only to "
                                "public addresses (the operator can allow others with WEBHOOKS_ALLOW_PRIVATE).")
    return Target(url=url.strip(), host=host, port=port, scheme=parts.scheme, addresses=addresses)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _pinned(target: Target, address: str) -> tuple[str, dict, dict]:
    """The URL with the checked ``address`` in place of the host, the Host header, and TLS's server name."""
    parts = urlsplit(target.url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host_header}, extensions


def send(*, url: str, secret: str, body: bytes, headers: dict) -> Outcome:
    """POST ``body`` to ``url``, signed now; never raises for what the network or the receiver does. The checked
    addresses are tried in the resolver's order (at most MAX_ADDRESSES) until one accepts the connection."""
    try:
        target = url_target(url)
    except UnsafeURL as exc:
        return Outcome(response_code=None, latency_ms=None, error=f"Not sent: {exc}"[:500], excerpt="")
    signed = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers,
              SIGNATURE_HEADER: signature(secret=secret, timestamp=int(time.time()), body=body)}
    outcome = None
    for address in target.addresses[:MAX_ADDRESSES]:
        outcome = _post(target=target, address=address, body=body, headers=signed)
        if not outcome.error.startswith(NO_CONNECTION):
            break
    return outcome


def _post(*, target: Target, address: str, body: bytes, headers: dict) -> Outcome:
    address_url, host, extensions = _pinned(target, address)
    timeout = settings.WEBHOOKS_TIMEOUT_SECONDS
    started = time.monotonic()
    try:
        with httpx2.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", address_url, content=body, headers={**headers, **host},
                               extensions=extensions) as response:
                latency = round((time.monotonic() - started) * 1000)
                excerpt = _excerpt(response)
    except httpx2.TimeoutException:
        return Outcome(response_code=None, latency_ms=None, error=f"No answer within {timeout:g} s (timeout).",
                       excerpt="")
    except httpx2.ConnectError as exc:
        # Nothing reached the receiver: the next address may be tried.
        return Outcome(response_code=None, latency_ms=None,
                       error=f"{NO_CONNECTION}: {type(exc).__name__}: {exc}"[:500], excerpt="")
    except httpx2.HTTPError as exc:
        return Outcome(response_code=None, latency_ms=None,
                       error=f"The request failed: {type(exc).__name__}: {exc}"[:500], excerpt="")
    code = response.status_code
    error = "" if 200 <= code < 300 else f"The receiver answered {code}" + (
        " (a redirect, not followed)." if 300 <= code < 400 else ".")
    return Outcome(response_code=code, latency_ms=latency, error=error, excerpt=excerpt)


def _excerpt(response) -> str:
    """At most EXCERPT_BYTES of the answer; the rest is never read."""
    data = b""
    try:
        for chunk in response.iter_raw():
            data += chunk
            if len(data) >= EXCERPT_BYTES:
                break
    except httpx2.HTTPError:
        pass  # the status line is the answer; a body cut short changes nothing
    return data[:EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "")
