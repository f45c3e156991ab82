"""The catalogue the /docs/ page renders: every error code and header the API can send.

Each code gets the anchor #error-<CODE> on /docs/, so an error answer or a dashboard message can
link straight to its explanation.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    meaning: str
    fix: str

    @property
    def anchor(self) -> str:
        return f"error-{self.code}"


ERROR_CODES = [
    ErrorCode(400, "INVALID_REQUEST", "The body is not a JSON object.",
              'Send one JSON object, e.g. {"prompt": "…"}.'),
    ErrorCode(400, "INVALID_JSON", "The body is not valid JSON.",
              "Check quoting and commas; send UTF-8."),
    ErrorCode(400, "INVALID_CONTENT_TYPE", "The Content-Type is not application/json.",
              "Send Content-Type: application/json."),
    ErrorCode(400, "INVALID_PROMPT", "prompt is missing, not a string, empty, or over 1000 characters after trimming.",
              "Send a string of 1 to 1000 characters."),
    ErrorCode(400, "INVALID_ORIENTATION", "orientation is not one of portrait, square or landscape.",
              "Use one of the three values, or leave it out for portrait."),
    ErrorCode(400, "INVALID_ALLOW_NSFW", "allowNSFW is not a JSON boolean.",
              'Send true or false, not "false" or 0.'),
    ErrorCode(400, "INVALID_ENHANCE", "enhance is not a JSON boolean.",
              'Send true or false, not "true" or 1.'),
    ErrorCode(400, "INVALID_N", "n is not a JSON integer from 1 to 4.",
              "Ask for 1 to 4 images per request; each is charged and counted on its own."),
    ErrorCode(400, "INVALID_NEGATIVE_PROMPT", "negative_prompt is not a string, or over 1000 characters after trimming.",
              "Send a string of at most 1000 characters, or leave it out."),
    ErrorCode(400, "INVALID_MODEL", "model is not one of the ids GET /api/models lists, or that model is not available now.",
              "Use an id from GET /api/models (or /v1/models), or leave it out for the default."),
    ErrorCode(400, "INVALID_SIZE", "On /v1/images/generations: size is not WIDTHxHEIGHT or auto.",
              "Send e.g. 1024x1024, 1024x1536 or 1536x1024; it is snapped to the nearest of our three sizes."),
    ErrorCode(400, "INVALID_RESPONSE_FORMAT", "On /v1/images/generations: response_format is not url or b64_json.",
              "Send url or b64_json, or leave it out."),
    ErrorCode(400, "INVALID_SEED", "seed is not a JSON integer from 0 to 4294967295.",
              "Send an integer, or leave it out for a random seed."),
    ErrorCode(400, "INVALID_ASYNC", "async is not a JSON boolean.",
              "Send true or false."),
    ErrorCode(400, "INVALID_WEBHOOK_URL",
              "webhook_url is not an https URL on port 80, 443 or 8443 that resolves to public addresses, "
              "or was sent without async.",
              "Send a public https URL with \"async\": true (or Prefer: respond-async)."),
    ErrorCode(400, "INVALID_USER", "On /v1/images/generations: user is not a string of at most 256 characters.",
              "Send a short string naming your end user, or leave it out."),
    ErrorCode(400, "INVALID_QUERY", "GET /api/tags: q is missing or longer than 100 characters.",
              "Send q with the start of a tag, alias or word."),
    ErrorCode(400, "INVALID_LIMIT", "GET /api/tags: limit is not an integer from 1 to 50.",
              "Send a number from 1 to 50, or leave it out."),
    ErrorCode(400, "UNKNOWN_FIELD", "The body has a field the API does not know (names are case-sensitive).",
              "Remove it or fix its spelling: allowNSFW, not allowNsfw."),
    ErrorCode(400, "INVALID_IDEMPOTENCY_KEY", "The Idempotency-Key header is empty or longer than 255 characters.",
              "Send a unique string per operation, such as a UUID."),
    ErrorCode(400, "CONTENT_POLICY_VIOLATION",
              "The prompt (or what the enhancer made of it) pairs a minor with sexual or nude content. "
              "This is refused whatever allowNSFW and enhance say, in every language, and recorded.",
              "Nothing was charged. Do not retry: sexual content involving minors is never generated."),
    ErrorCode(401, "INVALID_KEY", "The Authorization header is missing, malformed, or names an unknown or revoked key.",
              "Send Authorization: Bearer ank_… with a live key from the API keys page."),
    ErrorCode(401, "KEY_EXPIRED", "The key is past the expiry date set on it.",
              "Create a new key, or move the expiry on the API keys page."),
    ErrorCode(402, "INSUFFICIENT_BALANCE", "Your balance does not cover the price of an image.",
              "Top up on the billing page; nothing was charged."),
    ErrorCode(402, "KEY_SPEND_CAP_REACHED", "This key has reached its daily or total spend cap.",
              "Nothing was charged. Raise the cap on the API keys page, or wait for the next UTC day."),
    ErrorCode(403, "IP_NOT_ALLOWED", "The key's IP allow-list does not include the address the request came from.",
              "Call from an allowed network, or edit the key's allow-list."),
    ErrorCode(404, "NOT_FOUND", "No such path, or no generation with this id among yours.",
              "Check the URL and the id."),
    ErrorCode(405, "METHOD_NOT_ALLOWED", "The endpoint does not accept this HTTP method.",
              "Use POST for /api/generate."),
    ErrorCode(409, "IDEMPOTENCY_IN_PROGRESS", "A request with the same Idempotency-Key is still being processed.",
              "Wait for the first request to finish, then retry to get its answer."),
    ErrorCode(409, "GENERATION_IN_PROGRESS", "DELETE on a generation that is still pending or running.",
              "Nothing was deleted. Retry once its status is succeeded or failed."),
    ErrorCode(413, "REQUEST_TOO_LARGE", "The body is larger than 64 KiB.",
              "Send a shorter body; a prompt is at most 1000 characters."),
    ErrorCode(422, "NSFW_CONTENT_BLOCKED", "allowNSFW was false and the image was flagged twice, so it was withheld.",
              "Nothing was charged. Rephrase the prompt."),
    ErrorCode(422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was already used with a different body.",
              "Use a new key for a new request."),
    ErrorCode(429, "RATE_LIMIT_EXCEEDED", "More requests in the last minute than a key may send.",
              "Wait for Retry-After seconds, then retry."),
    ErrorCode(429, "DAILY_LIMIT_EXCEEDED", "Your account has generated its daily limit of images (UTC day).",
              "The limit resets at midnight UTC; Retry-After says when."),
    ErrorCode(500, "GENERATION_FAILED", "The image could not be generated.",
              "The charge was refunded. Retry, ideally with the same Idempotency-Key."),
    ErrorCode(503, "SERVICE_UNAVAILABLE", "A service the API depends on is briefly unavailable.",
              "Nothing was charged. Retry after Retry-After seconds."),
]


@dataclass(frozen=True)
class Header:
    name: str
    direction: str  # "request" or "response"
    meaning: str


HEADERS = [
    Header("Authorization", "request", "Bearer ank_… — your API key. Required."),
    Header("Content-Type", "request", "application/json. Required."),
    Header("Idempotency-Key", "request",
           "Optional. Retries with the same key and body within 24 hours return the first answer "
           "(marked Idempotent-Replayed: true) and are charged once."),
    Header("X-Request-ID", "both",
           "Optional on requests (up to 128 of A–Z a–z 0–9 . _ : -); always on answers. Quote it when asking for help."),
    Header("X-RateLimit-Limit", "response", "Requests allowed per minute for this key."),
    Header("X-RateLimit-Remaining", "response", "Requests left in the current minute."),
    Header("X-RateLimit-Reset", "response", "Unix time (seconds) when the window frees up."),
    Header("Retry-After", "response", "Seconds to wait, on 429 and 503 answers."),
    Header("x-should-retry", "response",
           "On /v1/ answers that must not be retried as they are (400, 401, 402, 403, 404, 413, 422): false. "
           "The OpenAI SDKs read it and do not retry."),
]
