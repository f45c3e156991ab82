#!/usr/bin/env bash
# `make prod-check`: the production configuration, run for real on this machine.
#
# A fresh PostgreSQL database, migrated; `manage.py check --deploy` with warnings as failures;
# then gunicorn (config/gunicorn.py), a Celery worker on `generate`, one on the default queue
# (webhooks, housekeeping) and Celery beat, all with DJANGO_ENV=production; then
# scripts/smoke_test.py over HTTP. Whatever happens, every process it started is stopped.
#
# PRODCHECK_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/animeapi_ops_prodcheck; the
# database is dropped and created again) and PRODCHECK_REDIS_URL (default redis://127.0.0.1:6379/9,
# flushed)
# choose the services; PRODCHECK_GENERATION_BACKEND the backend (default preview); PYTHON the
# interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PYTHON")
WORK=$(mktemp -d -t animeapi-prodcheck.XXXXXX)
PIDS=()

stop_all() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # gunicorn and Celery finish what they hold on TERM; anything still up after 30 s is killed.
    for _ in $(seq 30); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$status" != 0 ]; then
        for log in "$WORK"/*.log; do
            [ -e "$log" ] || continue
            echo "----- last lines of $(basename "$log")" >&2
            tail -n 40 "$log" >&2
        done
        echo "prod-check FAILED" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s\n' "$*"; }

export DJANGO_ENV=production
export DEBUG=0
SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')
export SECRET_KEY
export ALLOWED_HOSTS=127.0.0.1,localhost
# No TLS here: a redirect to https would answer every plain request with a 301.
export SECURE_SSL_REDIRECT=0
# No CDN or S3 here: Django serves the images so the smoke test can fetch one.
export SERVE_MEDIA=1
export MEDIA_ROOT="$WORK/media"
export DATABASE_URL=${PRODCHECK_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/animeapi_ops_prodcheck}
export REDIS_URL=${PRODCHECK_REDIS_URL:-redis://127.0.0.1:6379/9}
export GENERATION_BACKEND=${PRODCHECK_GENERATION_BACKEND:-preview}
unset PUBLIC_BASE_URL AWS_STORAGE_BUCKET_NAME
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BIND="127.0.0.1:$PORT"

step "fresh database and Redis db: $("$PYTHON" -c 'import os, dj_database_url; print(dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"])')"
"$PYTHON" - <<'EOF'
import os

import dj_database_url
import psycopg

db = dj_database_url.parse(os.environ["DATABASE_URL"])
with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                     password=db["PASSWORD"] or None, dbname="postgres", autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{db["NAME"]}"')

# The Redis database is the check's own too: counters keyed by row ids from an earlier run's
# database (rate-limit buckets, quotas) would otherwise meet the new rows that reuse those ids.
import redis

redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
EOF
"$PYTHON" manage.py migrate --noinput -v 0
"$PYTHON" manage.py collectstatic --noinput -v 0

step "manage.py check --deploy --fail-level WARNING"
# Checked as deployed, behind TLS; the servers below run without the redirect only because
# this machine has no TLS in front of them.
SECURE_SSL_REDIRECT=1 "$PYTHON" manage.py check --deploy --fail-level WARNING

# A heartbeat left in Redis by an earlier run would make /readyz pass before our worker is up.
"$PYTHON" manage.py shell -v 0 -c \
    'from django.core.cache import cache; from config.health import HEARTBEAT_KEY; cache.delete(HEARTBEAT_KEY)'

step "start gunicorn on $BIND, Celery workers and beat"
"$BIN/celery" -A config worker -Q generate -P prefork -c 2 --without-gossip --without-mingle -l info \
    -n "prodcheck-generate-$$@%h" >"$WORK/worker-generate.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A config worker -Q celery -P threads -c 2 --without-gossip --without-mingle -l info \
    -n "prodcheck-default-$$@%h" >"$WORK/worker-default.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A config beat -l info --schedule "$WORK/celerybeat-schedule" >"$WORK/beat.log" 2>&1 &
PIDS+=($!)
"$BIN/gunicorn" -c config/gunicorn.py config.wsgi >"$WORK/gunicorn.log" 2>&1 &
PIDS+=($!)

up=0
for _ in $(seq 60); do
    if "$PYTHON" -c 'import os, sys, httpx; sys.exit(httpx.get("http://" + os.environ["BIND"] + "/healthz").status_code != 200)' \
        2>/dev/null; then
        up=1
        break
    fi
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { echo "a process exited at start (pid $pid)" >&2; exit 1; }
    done
    sleep 0.5
done
[ "$up" = 1 ] || { echo "gunicorn did not answer /healthz within 30 s" >&2; exit 1; }

step "smoke test over HTTP"
"$PYTHON" scripts/smoke_test.py --base-url "http://$BIND" --ready-timeout 45

step "every process is still up"
for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "pid $pid exited during the check" >&2; exit 1; }
done
grep -q "beat: Starting" "$WORK/beat.log" || { echo "Celery beat did not start" >&2; exit 1; }
if grep -E "Traceback|CRITICAL|ERROR" "$WORK"/*.log; then
    echo "errors were logged during the check" >&2
    exit 1
fi
echo "prod-check passed"
