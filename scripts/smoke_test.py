"""Smoke test of a running AnimeAPI over HTTP, as a developer and a load balancer see it.

    python scripts/smoke_test.py --base-url http://127.0.0.1:8000
    python scripts/smoke_test.py --base-url http://localhost:8000 \
        --manage "docker compose -f deploy/compose.yaml exec -T web python manage.py"

It creates its own key with `manage.py createapikey smoke@example.com --credit 1` (through
--manage, so it works against a container as well as a local checkout), then checks: /healthz;
/readyz, waiting for a worker's heartbeat; the 401 and 400 JSON errors; one POST /api/generate;
the image behind image_url (a WEBP of 832x1280); the balance, down by exactly the price; the
landing page and its static files; HSTS behind a TLS proxy. One image is charged, $0.009.
Exits non-zero at the first failed check.
"""

import argparse
import io
import re
import shlex
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PRICE = Decimal("0.009")
PORTRAIT = (832, 1280)
# A well-formed key (ank_ + 42 base62 characters) that was never issued.
UNKNOWN_KEY = "ank_" + "A" * 42


class SmokeTestFailed(Exception):
    pass


def check(name, condition, detail=""):
    if not condition:
        raise SmokeTestFailed(f"{name}: {detail}" if detail else name)
    print(f"ok   {name}", flush=True)


def describe(response):
    return f"{response.status_code} {response.headers.get('content-type', '')} {response.text[:300]!r}"


def error_code(response):
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) and isinstance(body.get("error"), str) else None


def create_key(manage):
    """A fresh key and the balance its user holds right after the credit."""
    result = subprocess.run([*manage, "createapikey", "smoke@example.com", "--name", "smoke test", "--credit", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SmokeTestFailed(f"createapikey failed ({result.returncode}): {result.stderr.strip()[-1000:]}")
    key = result.stdout.strip().splitlines()[-1]
    balance = re.search(r"balance \$([0-9.]+)", result.stderr)
    check("createapikey printed a key and the new balance", key.startswith("ank_") and balance,
          f"stdout {result.stdout!r}, stderr {result.stderr!r}")
    return key, Decimal(balance.group(1))


def wait_ready(http, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(1)


def run(base_url, manage, ready_timeout_s):
    with httpx.Client(base_url=base_url, timeout=90) as http:
        response = http.get("/healthz")
        check("GET /healthz is 200 {status: ok}", response.status_code == 200 and response.json() == {"status": "ok"},
              describe(response))

        response = wait_ready(http, ready_timeout_s)
        check(f"GET /readyz is 200 within {ready_timeout_s:g} s (database, Redis, broker, storage, worker)",
              response.status_code == 200 and response.json().get("status") == "ok", describe(response))

        key, balance_before = create_key(manage)
        auth = {"Authorization": f"Bearer {key}"}

        response = http.post("/api/generate", json={"prompt": "anime girl"})
        check("no key: 401 INVALID_KEY", response.status_code == 401 and error_code(response) == "INVALID_KEY",
              describe(response))
        response = http.post("/api/generate", json={"prompt": "anime girl"},
                             headers={"Authorization": f"Bearer {UNKNOWN_KEY}"})
        check("unknown key: 401 INVALID_KEY", response.status_code == 401 and error_code(response) == "INVALID_KEY",
              describe(response))
        for body, code in [
            ({}, "INVALID_PROMPT"),
            ({"prompt": "   "}, "INVALID_PROMPT"),
            ({"prompt": "anime girl", "orientation": "diagonal"}, "INVALID_ORIENTATION"),
            ({"prompt": "anime girl", "allowNSFW": "false"}, "INVALID_ALLOW_NSFW"),
            ({"prompt": "anime girl", "allowNsfw": False}, "UNKNOWN_FIELD"),
        ]:
            response = http.post("/api/generate", json=body, headers=auth)
            check(f"{body}: 400 {code}", response.status_code == 400 and error_code(response) == code,
                  describe(response))
        response = http.post("/api/generate", content=b'{"prompt": ',
                             headers={**auth, "Content-Type": "application/json"})
        check("broken JSON: 400 INVALID_JSON", response.status_code == 400 and error_code(response) == "INVALID_JSON",
              describe(response))

        response = http.post("/api/generate", json={"prompt": "anime girl with blue hair, magical forest"},
                             headers={**auth, "X-Request-ID": "smoke-test"})
        check("POST /api/generate is 200", response.status_code == 200, describe(response))
        body = response.json()
        check("the answer has the reference's fields",
              set(body) >= {"image_url", "enhanced_prompt", "balance_usd", "generation_time_ms"}
              and isinstance(body["balance_usd"], (int, float)) and isinstance(body["generation_time_ms"], int)
              and body["enhanced_prompt"], body)
        check("X-Request-ID is echoed", response.headers.get("x-request-id") == "smoke-test", dict(response.headers))
        check("X-RateLimit-* headers are sent",
              all(name in response.headers for name in ("x-ratelimit-limit", "x-ratelimit-remaining",
                                                         "x-ratelimit-reset")), dict(response.headers))
        # Error answers above must not have charged anything: exactly one price since the credit.
        check(f"balance_usd is {balance_before} - {PRICE}",
              Decimal(str(body["balance_usd"])) == balance_before - PRICE,
              f"got {body['balance_usd']}, balance after the credit was {balance_before}")

        image = httpx.get(body["image_url"], timeout=30)
        check("image_url answers 200 image/webp", image.status_code == 200
              and image.headers.get("content-type", "").startswith("image/webp"), describe(image))
        with Image.open(io.BytesIO(image.content)) as decoded:
            check(f"the image is a WEBP of {PORTRAIT[0]}x{PORTRAIT[1]}",
                  decoded.format == "WEBP" and decoded.size == PORTRAIT, f"{decoded.format} {decoded.size}")

        response = http.get("/api/generate", headers=auth)
        check("GET /api/generate: 405 METHOD_NOT_ALLOWED",
              response.status_code == 405 and error_code(response) == "METHOD_NOT_ALLOWED", describe(response))

        # Static files come from collectstatic's manifest: a missing entry is a 500 on every page.
        response = http.get("/")
        check("GET / renders", response.status_code == 200 and "text/html" in response.headers.get("content-type", ""),
              describe(response))
        stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', response.text)
        check("the landing page links a stylesheet", stylesheets, response.text[:500])
        for path in stylesheets:
            asset = http.get(path)
            check(f"GET {path} is 200", asset.status_code == 200, describe(asset))

        response = http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        check("HSTS is sent behind a TLS proxy", "strict-transport-security" in response.headers,
              dict(response.headers))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--manage", default=f"{shlex.quote(sys.executable)} manage.py",
                        help="how to run manage.py against the same database (a shell-quoted command)")
    parser.add_argument("--ready-timeout", type=float, default=45.0, help="seconds to wait for /readyz")
    args = parser.parse_args()
    try:
        run(args.base_url.rstrip("/"), shlex.split(args.manage), args.ready_timeout)
    except (SmokeTestFailed, httpx.HTTPError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        sys.exit(1)
    print("smoke test passed")


if __name__ == "__main__":
    main()
