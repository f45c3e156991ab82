"""Create the image bucket if it does not exist yet: compose's one-shot `createbucket`.

Reads the settings the app reads (AWS_STORAGE_BUCKET_NAME, AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME, IMAGE_URL_TTL_S). With IMAGE_URL_TTL_S > 0 the bucket
stays private and answers carry presigned URLs. With 0 the app hands out plain URLs, so objects
are made publicly readable, one by one by their unguessable names: the bucket's listing stays
private.
"""

import json
import os
import sys

import boto3
from botocore.exceptions import ClientError


def main():
    bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME")
    if not bucket:
        sys.exit("create_bucket: AWS_STORAGE_BUCKET_NAME is not set")
    region = os.environ.get("AWS_S3_REGION_NAME") or None
    s3 = boto3.client(
        "s3", endpoint_url=os.environ.get("AWS_S3_ENDPOINT_URL") or None, region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
    )
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket} exists")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
        # us-east-1 is the one region that refuses an explicit location constraint.
        location = {} if region in (None, "us-east-1") else {"LocationConstraint": region}
        s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": location} if location else {}))
        print(f"bucket {bucket} created")

    if int(os.environ.get("IMAGE_URL_TTL_S") or 0) == 0:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                           "Resource": [f"arn:aws:s3:::{bucket}/images/*"]}],
        }
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        print(f"objects under {bucket}/images/ are publicly readable (IMAGE_URL_TTL_S=0)")


if __name__ == "__main__":
    try:
        main()
    except ClientError as exc:
        sys.exit(f"create_bucket: {exc}")
