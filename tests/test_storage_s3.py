"""Images on S3, against a real S3 API served locally by moto's server mode."""

import io
import json
import socket
import subprocess
import sys
import time

import boto3
import httpx
import pytest
from PIL import Image

from tests.conftest import generate

BUCKET = "animeapi-images"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.HTTPError:
            assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    s3.create_bucket(Bucket=BUCKET)
    # Public reads, as an operator serving images without presigning (IMAGE_URL_TTL_S=0) sets up.
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/images/*",
    }]}))
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def s3_storages(endpoint, ttl):
    return {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": endpoint, "region_name": "us-east-1",
                        "access_key": "test", "secret_key": "test", "querystring_auth": ttl > 0,
                        "querystring_expire": ttl or 3600, "signature_version": "s3v4", "file_overwrite": False,
                        "default_acl": None},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.mark.django_db
@pytest.mark.parametrize("ttl", [0, 600])
def test_images_go_to_s3_under_random_keys(client, alice_key, s3_endpoint, settings, ttl):
    settings.STORAGES = s3_storages(s3_endpoint, ttl)
    first = generate(client, alice_key, {"prompt": "a fox", "orientation": "square"}).json()
    second = generate(client, alice_key, {"prompt": "a fox", "orientation": "square"}).json()

    assert first["image_url"].startswith(f"{s3_endpoint}/{BUCKET}/images/")
    assert ("X-Amz-Signature=" in first["image_url"]) == (ttl > 0)
    if ttl:
        assert "X-Amz-Expires=600" in first["image_url"]
    key = first["image_url"].split(f"/{BUCKET}/", 1)[1].split("?")[0]
    assert len(key.rsplit("/", 1)[1]) >= 24 and first["image_url"] != second["image_url"]

    response = httpx.get(first["image_url"])
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "WEBP" and image.size == (1024, 1024)
    objects = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test").list_objects_v2(Bucket=BUCKET, Prefix="images/")
    assert key in [item["Key"] for item in objects["Contents"]]


@pytest.mark.django_db
def test_readiness_checks_s3(client, s3_endpoint, settings):
    settings.STORAGES = s3_storages(s3_endpoint, 0)
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    settings.STORAGES = s3_storages("http://127.0.0.1:9", 0)  # nothing listens there
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["storage"] == "failing"
