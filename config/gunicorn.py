"""gunicorn settings for the web tier: `gunicorn -c config/gunicorn.py config.wsgi`.

A synchronous POST /api/generate holds one thread for as long as a GPU worker takes (up to
GENERATION_TIMEOUT_S), so a web node's capacity is its thread count, not its cores: threads are
cheap while they wait, processes are not. gthread keeps every library (psycopg, redis-py,
Celery's result backend) in its ordinary blocking mode; bench/concurrency.py measures gevent
against it. Every value comes from the environment:

    BIND / PORT           where to listen (BIND wins, comma-separated; PORT alone means
                          0.0.0.0:$PORT, as in gunicorn itself; neither: 127.0.0.1:8000)
    WEB_CONCURRENCY       processes (default: one per core)
    GUNICORN_THREADS      threads per process (default 128: two processes keep 256 requests in flight)
    GUNICORN_WORKER_CLASS gthread (default) or gevent (needs `pip install gevent`)
    GUNICORN_MAX_REQUESTS recycle a process after this many requests (default 5000, 0 = never)
    FORWARDED_ALLOW_IPS   proxies trusted to set X-Forwarded-Proto (default: 127.0.0.1,::1)
    GUNICORN_ACCESS_LOG   access log file, "-" (stdout, the default) or empty for none
    GENERATION_TIMEOUT_S  the API's deadline, which the timeouts below must outlast
    PROMETHEUS_MULTIPROC_DIR  where worker processes keep /metrics counters (default: one
                          directory per server under /dev/shm, emptied at start)
"""

import json
import logging
import os
import shutil
import time

from gunicorn import glogging

from config.logging import scrub_secrets


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
# (generation.dispatch.WAIT_GRACE_S); a worker restarted by max_requests, a reload or a deploy
# finishes those requests before it exits, and only a process stuck past all that is killed.
_generation_timeout_s = _float("GENERATION_TIMEOUT_S", 60.0)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", int(_generation_timeout_s) + 15)
timeout = _int("GUNICORN_TIMEOUT", int(_generation_timeout_s) + 30)
# Each idle keep-alive connection holds a slot of worker_connections; 5 s covers a client's next
# request. Behind a load balancer that reuses upstream connections, make this longer than its
# idle timeout (AWS ALB: 60 s), or it may send a request on a connection we are closing.
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Slow leaks (fragmentation, caches) cannot build up; the jitter keeps processes from
# restarting together and halving the node's capacity at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 10)

# The TLS proxy's addresses: only their X-Forwarded-Proto makes wsgi.url_scheme https. (Django's
# SECURE_PROXY_SSL_HEADER reads the header whoever sent it, so the proxy must overwrite it too.)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

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


# Logs: stdout and stderr, for the container runtime or journald. In production (LOG_FORMAT
# json, as in config/settings.py) gunicorn's own lines are JSON objects like Django's.
class JsonLogFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        atoms = record.args if record.name == "gunicorn.access" and isinstance(record.args, dict) else None
        if atoms is None:
            entry["message"] = record.getMessage()
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
        else:
            def text(key):
                # gunicorn escapes quotes for its text format; JSON does its own escaping.
                return atoms[key].replace('\\"', '"') if isinstance(atoms[key], str) else atoms[key]

            entry.update({
                "message": f"{text('m')} {text('U')} {atoms['s']}",
                "method": text("m"), "path": text("U"), "query": text("q"), "status": int(atoms["s"]),
                "bytes": atoms["B"], "duration_ms": atoms["M"], "remote_addr": text("h"),
                "user_agent": text("a"), "request_id": text("{x-request-id}o"),
            })
        return json.dumps(entry, ensure_ascii=False)


accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s "%(a)s"'
_production = os.environ.get("DJANGO_ENV") == "production"
if os.environ.get("LOG_FORMAT", "json" if _production else "plain") == "json":
    _access_handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    if accesslog not in (None, "-"):
        _access_handler = {"class": "logging.FileHandler", "formatter": "json", "filename": accesslog}
    # Not propagated: the root logger (Django's own handler, once a worker has loaded settings)
    # would print every line a second time.
    logconfig_dict = {
        "root": {"level": "INFO", "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO" if accesslog else "CRITICAL",
                                "handlers": ["access"] if accesslog else [], "propagate": False},
        },
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "access": _access_handler,
        },
    }

# /metrics sums the counters of every worker process (config/metrics.py): prometheus_client
# keeps them in files under PROMETHEUS_MULTIPROC_DIR, which must start empty and must be set
# before a worker imports it. The default is named after this master, so a config reload (HUP)
# finds the same directory and two servers on one machine never share one.
_metrics_dir_default = os.path.join(worker_tmp_dir or "/tmp", f"animeapi-metrics-{os.getpid()}")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _metrics_dir_default)


def on_starting(server):
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ["PROMETHEUS_MULTIPROC_DIR"] == _metrics_dir_default:
        shutil.rmtree(_metrics_dir_default, ignore_errors=True)


class ScrubbingLogger(glogging.Logger):
    """gunicorn's logger, with any API key in a request line, path or query replaced: a key a
    client put in a URL must not be written to the access log."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: scrub_secrets(value) if isinstance(value, str) else value for name, value in atoms.items()}


logger_class = ScrubbingLogger
