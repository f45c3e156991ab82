"""Structured logs: one JSON object per line, with the request id of the request being served."""

import contextvars
import json
import logging
import re
import time

# Set by config.middleware.RequestIdMiddleware for the duration of a request.
request_id_var = contextvars.ContextVar("request_id", default="")


# An API key, also percent-encoded ("ank%5F…"), wherever it appears in a logged line.
API_KEY_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])ank(?:_|%5[Ff])[0-9A-Za-z_%]{20,}")


def scrub_secrets(text: str) -> str:
    """The text with every API key replaced: a key sent in a URL must not live on in the logs."""
    return API_KEY_IN_TEXT.sub("ank_[REDACTED]", text) if "ank" in text else text


class ScrubSecretsFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        scrubbed = scrub_secrets(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """Fields a log pipeline can index; anything passed in `extra=` is kept too."""

    RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "request_id"}

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", ""):
            entry["request_id"] = record.request_id
        for key, value in record.__dict__.items():
            if key not in self.RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
