"""Completion webhooks for async generations, signed the way Stripe signs the ones we receive.

`AnimeAPI-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the user's
webhook secret>`. Receivers recompute it and reject stale timestamps (we suggest 5 minutes).
Only public addresses are called: a URL that resolves to a private, loopback, link-local or
reserved address is refused, at submission and again at delivery (the DNS may have changed).
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .models import Generation

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "AnimeAPI-Signature"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class UnsafeWebhookUrl(ValueError):
    pass


class WebhookDeliveryFailed(Exception):
    pass


def sign(payload: bytes, *, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# IPv6 ranges that carry an IPv4 address inside (NAT64, 6to4, Teredo, IPv4-mapped and -compatible,
# SIIT): through a gateway they reach that IPv4 address, which may be a private one.
EMBEDDED_IPV4_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::ffff:0:0/96", "::/96", "::ffff:0:0:0/96",
))
CONTROL_CHARACTERS = re.compile(r"[\x00-\x20\x7f-\x9f]")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.version == 6 and any(address in network for network in EMBEDDED_IPV4_NETWORKS):
        return False
    return address.is_global and not address.is_multicast


def check_url(url: str) -> str:
    """The address to connect to, or UnsafeWebhookUrl unless `url` is an http(s) URL on an allowed
    port whose host resolves to public addresses only. Delivery connects to this very address, so
    a second DNS answer (rebinding to an internal one) is never used."""
    if CONTROL_CHARACTERS.search(url):
        # urlsplit quietly drops tabs and newlines; a URL that needs them is not one we call.
        raise UnsafeWebhookUrl("webhook_url must not contain spaces or control characters")
    parts = urlsplit(url)
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS
    if parts.scheme not in ("https",) + (("http",) if allow_private or settings.DEBUG else ()):
        raise UnsafeWebhookUrl("webhook_url must be an https:// URL")
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeWebhookUrl("webhook_url must name a host, without credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeWebhookUrl("webhook_url has an invalid port") from None
    allowed_ports = settings.WEBHOOK_ALLOWED_PORTS
    if "*" not in allowed_ports and str(port) not in allowed_ports:
        raise UnsafeWebhookUrl(f"webhook_url's port must be one of {', '.join(allowed_ports)}")
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeWebhookUrl("webhook_url's host does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private and not all(is_public_address(address) for address in addresses):
        raise UnsafeWebhookUrl("webhook_url must resolve to public addresses only")
    return str(addresses[0])


def _pinned(url: str, address: str) -> tuple[str, dict, dict]:
    """The URL with its host replaced by the checked address, plus the Host header and TLS name
    that keep the request (and certificate check) about the original host."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    headers = {"Host": parts.netloc}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), headers, extensions


def deliver(*, generation: Generation, payload: dict) -> None:
    """POST the signed event once; raise WebhookDeliveryFailed for the caller's retry."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "AnimeAPI-Webhooks/1.0",
        SIGNATURE_HEADER: sign(body, secret=generation.user.webhook_secret, timestamp=int(time.time())),
    }
    Generation.objects.filter(pk=generation.pk).update(webhook_attempts=F("webhook_attempts") + 1)
    try:
        url, host_header, extensions = _pinned(generation.webhook_url, check_url(generation.webhook_url))
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.post(url, content=body, headers={**headers, **host_header}, extensions=extensions)
    except UnsafeWebhookUrl as exc:
        log.warning("webhook for %s not sent: %s", generation.pk, exc)
        return  # not retried: it will not become safe by waiting
    except httpx.HTTPError as exc:
        raise WebhookDeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookDeliveryFailed(f"receiver answered {response.status_code}")
    Generation.objects.filter(pk=generation.pk).update(webhook_delivered_at=timezone.now())
