"""gunicorn settings for the web tier: `gunicorn -c config/gunicorn.py config.wsgi`.

A synchronous POST /api/generate holds one thread for as long as a GPU worker takes (up to
GENERATION_TIMEOUT_S), so a web node's capacity is its thread count, not its cores: threads are
cheap while they wait, processes are not. gthread keeps every library (psycopg, redis-py,
Celery's result backend) in its ordinary blocking mode; bench/concurrency.py measured gevent
against it on a 2-core node. Every value comes from the environment:

    BIND / PORT           where to listen (BIND wins; PORT alone means 0.0.0.0:$PORT, as in
                          gunicorn itself; neither: 127.0.0.1:8000)
    WEB_CONCURRENCY       processes (default: one per core)
    GUNICORN_THREADS      threads per process (default 128: two processes keep 256 requests in flight)
    GUNICORN_WORKER_CLASS gthread (default) or gevent (needs `pip install gevent`)
    GUNICORN_MAX_REQUESTS recycle a process after this many requests (default 5000, 0 = never)
    FORWARDED_ALLOW_IPS   proxies trusted to set X-Forwarded-* (default: 127.0.0.1,::1)
    GENERATION_TIMEOUT_S  the API's deadline, which the timeouts below must outlast
"""

import os


def _int(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {value!r}") from None


def _float(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


if os.environ.get("BIND"):
    bind = [address.strip() for address in os.environ["BIND"].split(",") if address.strip()]
elif os.environ.get("PORT"):
    bind = [f"0.0.0.0:{os.environ['PORT']}"]
else:
    bind = ["127.0.0.1:8000"]

worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = _int("WEB_CONCURRENCY", os.cpu_count() or 1)
threads = _int("GUNICORN_THREADS", 128)
# gthread: connections one process accepts, kept-alive idle ones included. Past `threads`, an
# accepted request queues inside that process even while a sibling has idle threads, so the
# margin is only for idle keep-alive connections. gevent: greenlets per process.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads + 64 if worker_class == "gthread" else 1000)
backlog = _int("GUNICORN_BACKLOG", 2048)

# A request may legitimately wait GENERATION_TIMEOUT_S for the GPU plus the pipeline's grace
# (generation.pipeline.WAIT_GRACE_S); a worker restarted by max_requests, a reload or a deploy
# finishes those requests before it exits, and only a process stuck past all that is killed.
_generation_timeout_s = _float("GENERATION_TIMEOUT_S", 60.0)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", int(_generation_timeout_s) + 15)
timeout = _int("GUNICORN_TIMEOUT", int(_generation_timeout_s) + 30)
# Longer than a load balancer's idle timeout (AWS ALB: 60 s) would be ideal, but each idle
# connection holds a slot of worker_connections; 5 s covers a client's next request.
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Slow leaks (fragmentation, caches) cannot build up; the jitter keeps processes from
# restarting together and halving the node's capacity at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 10)

# The TLS proxy's addresses: only their X-Forwarded-Proto makes wsgi.url_scheme https. (Django's
# SECURE_PROXY_SSL_HEADER reads the header whoever sent it, so the proxy must overwrite it too.)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The request body is at most 64 KiB; headers stay within gunicorn's defaults.
limit_request_line = 8190
limit_request_fields = 100

# Stdout by default (the container's or journald's log); an empty value turns it off.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s "%(a)s"'
# The heartbeat file is touched every second; /dev/shm keeps that off a slow container disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
proc_name = "animeapi-web"

# gunicorn >= 25 opens a control socket at one fixed path per user, which two servers on one
# machine (a blue/green deploy, a benchmark beside the service) would fight over.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# Each process imports Django itself: preloading in the master would share the Celery and
# Redis connection pools across fork.
preload_app = False
