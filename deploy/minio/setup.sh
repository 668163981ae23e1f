#!/bin/sh
# Prepares MinIO for tuneloop: creates the bucket, and an application user whose policy reaches that bucket only,
# so the API and workers never hold the root credentials. Runs in the `minio-setup` one-shot (image minio/mc) on
# every `docker compose up`; every step is idempotent.
#
# Env: MINIO_URL, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, WAIT_ATTEMPTS.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER must be set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD must be set}"
: "${S3_ACCESS_KEY:?S3_ACCESS_KEY must be set}"
: "${S3_SECRET_KEY:?S3_SECRET_KEY must be set}"
url="${MINIO_URL:-http://minio:9000}"
bucket="${BUCKET:-tuneloop}"
attempts="${WAIT_ATTEMPTS:-60}"
policy=tuneloop-app

n=0
until mc alias set store "$url" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1 && mc ready store >/dev/null 2>&1; do
  n=$((n + 1))
  if [ "$n" -ge "$attempts" ]; then
    echo "minio-setup: MinIO at $url did not become ready after $attempts tries" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "store/$bucket"

# The policy names the bucket, so it is written here rather than kept beside this script. (The mc image is
# ubi-micro: a shell and coreutils, no grep or sed; this script sticks to shell built-ins.)
policy_file=/tmp/tuneloop-app-policy.json
cat >"$policy_file" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$bucket"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$bucket/*"]
    }
  ]
}
EOF
mc admin policy create store "$policy" "$policy_file"
rm -f "$policy_file"

# `user add` on an existing user updates its secret, so rotating S3_SECRET_KEY is "change it, `up` again".
mc admin user add store "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >/dev/null
# Attaching a policy that is already attached is reported as an error; that case is success here.
if ! mc admin policy attach store "$policy" --user "$S3_ACCESS_KEY" >/dev/null 2>&1; then
  info="$(mc admin user info store "$S3_ACCESS_KEY")"
  case "$info" in
    *"$policy"*) ;;
    *)
      echo "minio-setup: could not attach policy $policy to $S3_ACCESS_KEY" >&2
      exit 1
      ;;
  esac
fi
echo "minio-setup: bucket $bucket ready; user $S3_ACCESS_KEY may use it and nothing else"
