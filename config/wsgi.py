import io
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# The largest chunked body read; a longer one is cut here and refused by the size checks below it
# (413 on the API, Django's DATA_UPLOAD_MAX_MEMORY_SIZE elsewhere).
MAX_CHUNKED_BODY_BYTES = 2_621_440


def accept_chunked_bodies(app):
    """Django reads CONTENT_LENGTH bytes of a body, so a `Transfer-Encoding: chunked` request
    (no Content-Length; gunicorn decodes the chunks) would look empty: "prompt is required" for a
    body that has one. Read it here and give Django its length."""

    def application(environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(MAX_CHUNKED_BODY_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application


application = accept_chunked_bodies(get_wsgi_application())
