"""A local stand-in for Stripe's HTTP API, and helpers shared by the Stripe tests (no tests here).

The real `stripe` library talks to it over HTTP (settings.STRIPE_API_BASE), so the tests check
what the library actually sends: form-encoded parameters, headers, paging. Routes answer with
Stripe-shaped JSON; anything not routed answers Stripe's 404 error.
"""

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from billing import stripe as billing_stripe

WEBHOOK_SECRET = "whsec_test_standin_secret"
SECRET_KEY = "sk_test_standin"
WEBHOOK_URL = "/billing/stripe/webhook/"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    form: dict
    headers: dict = field(default_factory=dict)


class StripeStandIn:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self._routes = {}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                standin._answer(self, "GET")

            def do_POST(self):
                standin._answer(self, "POST")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, method: str, path: str, answer):
        """answer: a dict (sent as JSON, 200), or a function(RecordedRequest) -> (status, dict)."""
        self._routes[(method, path)] = answer

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def start(self):
        # A short poll interval: shutdown() waits up to one interval, once per test.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, method: str):
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        recorded = RecordedRequest(
            method=method,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            form=dict(parse_qsl(body, keep_blank_values=True)),
            headers={name.lower(): value for name, value in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(recorded)
            answer = self._routes.get((method, url.path))
        if answer is None:
            status, payload = 404, stripe_error(f"Unrecognized request URL ({method}: {url.path})")
        elif callable(answer):
            status, payload = answer(recorded)
        else:
            status, payload = 200, answer
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
        handler.end_headers()
        handler.wfile.write(data)


def stripe_error(message: str, error_type: str = "invalid_request_error") -> dict:
    return {"error": {"type": error_type, "message": message}}


def stripe_list(url: str, data: list, has_more: bool = False) -> dict:
    return {"object": "list", "url": url, "has_more": has_more, "data": data}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users made by the fixtures hash a password; the production hasher takes a second per user here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def stripe_api(settings):
    """Stripe configured and pointed at a fresh stand-in."""
    standin = StripeStandIn()
    standin.start()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = standin.url
    yield standin
    standin.stop()


def sign(body: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header exactly as Stripe computes it: HMAC-SHA256 of "{t}.{body}"."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


def checkout_session(
    *, user, session_id: str, amount_cents: int = 1000, payment_status: str = "paid",
    payment_intent: str | None = None, ours: bool = True,
) -> dict:
    metadata = {"user_id": str(user.pk), "purpose": billing_stripe.TOPUP_PURPOSE} if ours else {}
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": payment_status,
        "amount_subtotal": amount_cents,
        "amount_total": amount_cents,
        "currency": "usd",
        "client_reference_id": str(user.pk) if ours else None,
        "metadata": metadata,
        "payment_intent": payment_intent if payment_intent is not None else f"pi_for_{session_id}",
        "created": int(time.time()),
        "url": None,
    }


def payment_intent_with_receipt(payment_intent_id: str, receipt_url: str) -> dict:
    return {
        "id": payment_intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "latest_charge": {
            "id": f"ch_for_{payment_intent_id}",
            "object": "charge",
            "payment_intent": payment_intent_id,
            "receipt_url": receipt_url,
        },
    }
