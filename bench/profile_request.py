"""Where one POST /api/generate spends its time: a cProfile of N requests through the real WSGI
app (in this process, instant backend, rendered in the web process), with the SQL queries and
Redis commands each request makes. Prints one table of the heaviest parts and the counts.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/profile_request.py [--requests 300]
"""

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The parts of the request path, in the order a request meets them: cumulative time of the
# function that owns each part (a function's time includes what it calls).
PARTS = [
    ("whole request (Django's handler)", "django/core/handlers/base.py", "get_response"),
    ("authentication (key lookup)", "accounts/apikeys.py", "authenticate_key"),
    ("rate limit (Redis, moving window)", "generation/limits.py", "hit_rate_limit"),
    ("daily quota unit (Redis)", "generation/quota.py", "take"),
    ("JSON parse + validation", "generation/api.py", "parse_generate_request"),
    ("content policy", "generation/safety/policy.py", "enforce_and_record"),
    ("row + charge (one transaction)", "generation/charging.py", "start_generation"),
    ("rendering (enhance, backend, WEBP, XMP, store)", "generation/rendering.py", "run_generation"),
    ("  enhancer", "generation/enhance/__init__.py", "enhance_prompt"),
    ("  store the image", "generation/images.py", "store_image"),
    ("  the outcome's UPDATE", "generation/charging.py", "on_a_live_connection"),
    ("database connection checkouts", "psycopg_pool/pool.py", "getconn"),
    ("commits", "django/db/backends/base/base.py", "commit"),
    ("the answer's body", "generation/resources.py", "answer_for"),
    ("response headers (balance, quota)", "generation/api.py", "_account_headers"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} must point at PostgreSQL / Redis (make bench sets both)")
    from bench.api import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "GENERATION_BACKEND": "bench.instant.InstantBackend",
                       "ANIMEAPI_RATE_LIMIT_PER_MINUTE": "100000000", "ANIMEAPI_DAILY_LIMIT": "100000000",
                       "LOG_LEVEL": "WARNING", "MEDIA_ROOT": "/tmp/bench-profile-media", "DEBUG": "0",
                       "SECRET_KEY": "bench-only"})
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    from accounts.apikeys import create_api_key
    from accounts.models import User
    from billing import ledger

    user, _ = User.objects.get_or_create(email="profile@example.com")
    ledger.credit(user=user, amount="100000", kind=ledger.Kind.ADJUSTMENT, reference=f"profile:{time.time_ns()}")
    _, key = create_api_key(user=user, name="profile")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def post():
        response = client.post("/api/generate", data={"prompt": "anime girl with blue hair"},
                               content_type="application/json")
        assert response.status_code == 200, response.content

    for _ in range(20):  # warm: imports, the vocabulary, connections
        post()

    redis_commands = Counter()
    original = redis.Redis.execute_command

    def counting(self, *command, **options):
        redis_commands[str(command[0])] += 1
        return original(self, *command, **options)

    queries = []

    def record(execute, sql, params, many, context):
        queries.append({"sql": sql})
        return execute(sql, params, many, context)

    redis.Redis.execute_command = counting
    with connection.execute_wrapper(record):
        post()
    redis.Redis.execute_command = original

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.requests):
        post()
    profiler.disable()
    wall_ms = (time.perf_counter() - started) * 1000 / args.requests
    stats = pstats.Stats(profiler).stats

    def cumulative_ms(path, function):
        total = 0.0
        for (filename, _, name), (_, _, _, cumulative, _) in stats.items():
            if filename.endswith(path) and name == function:
                total += cumulative
        return total * 1000 / args.requests

    print(f"POST /api/generate in process, instant backend rendered in the web process, {args.requests} requests, "
          f"{os.cpu_count()} cores (cProfile adds its own overhead; compare parts, not totals)")
    print(f"{'part':<50} {'ms/request':>10}")
    for label, path, function in PARTS:
        print(f"{label:<50} {cumulative_ms(path, function):>10.2f}")
    print(f"{'wall time per request under the profiler':<50} {wall_ms:>10.2f}")
    print(f"SQL queries per request: {len(queries)}")
    for query in queries:
        print(f"  {query['sql'][:110]}")
    print(f"Redis commands per request: {sum(redis_commands.values())} ({', '.join(f'{k} x{v}' for k, v in sorted(redis_commands.items()))})")


if __name__ == "__main__":
    main()
