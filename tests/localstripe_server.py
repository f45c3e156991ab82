"""localstripe for the tests (`python tests/localstripe_server.py PORT`), plus the one Stripe
behaviour it lacks that our code relies on.

- Idempotency-Key: Stripe answers a repeated POST carrying the same key with the first answer
  (status and body, `Idempotent-Replayed: true`), refuses the key with other parameters (400
  idempotency_error) and answers 409 while the first request is still running. localstripe
  ignores the header, so a retried request would create a second object; this middleware does
  what Stripe documents, and nothing else.
- No state file: localstripe pickles its whole store to /tmp/localstripe.pickle after every
  write; test runs side by side on one machine would share it, and each run wants a fresh store.
"""

import sys

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError

_answers: dict[tuple[str, str], tuple[str, bytes, int, bytes]] = {}
_running: set[tuple[str, str]] = set()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"type": "idempotency_error", "message": message}}, status=status)


@web.middleware
async def idempotency(request: web.Request, handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    slot = (request.headers.get("Authorization", ""), key)
    body = await request.read()
    if slot in _running:
        return _error(409, "There is currently another in-progress request using this Stripe token.")
    if slot in _answers:
        path, first_body, status, payload = _answers[slot]
        if (path, first_body) != (request.path, body):
            return _error(400, "Keys for idempotent requests can only be used with the same parameters "
                               "they were first used with.")
        return web.Response(body=payload, status=status, content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    _running.add(slot)
    try:
        try:
            response = await handler(request)
        except UserError as exc:  # a declined card is an answer too: Stripe replays it
            response = exc.to_response()
        _answers[slot] = (request.path, body, response.status, response.body)
        return response
    finally:
        _running.discard(slot)


def main(port: int) -> None:
    resources.Store.dump_to_disk = lambda self: None
    server.app.middlewares.append(idempotency)
    sys.argv = ["localstripe", "--port", str(port), "--from-scratch"]
    server.start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
