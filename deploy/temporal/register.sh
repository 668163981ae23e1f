#!/bin/sh
# Waits until the Temporal frontend serves, then makes sure the namespace tuneloop uses exists and carries the
# search attributes operators filter runs by in the Temporal UI:
#   temporal operator search-attribute create --name TuneloopModel --type Keyword
#   temporal operator search-attribute create --name TuneloopStage --type Keyword
#   temporal operator search-attribute create --name TuneloopOutcome --type Keyword
# Runs in the `temporal-admin` one-shot; idempotent, so it runs on every `docker compose up`.
#
# Env: TEMPORAL_ADDRESS (also read by the CLI), TEMPORAL_NAMESPACE, TEMPORAL_RETENTION, WAIT_ATTEMPTS.
set -eu

address="${TEMPORAL_ADDRESS:-temporal:7233}"
ns="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_RETENTION:-720h}"
attempts="${WAIT_ATTEMPTS:-90}"

# retry DESCRIPTION COMMAND...: runs COMMAND every 2 s until it succeeds or WAIT_ATTEMPTS tries have failed.
retry() {
  what="$1"
  shift
  n=0
  until "$@"; do
    n=$((n + 1))
    if [ "$n" -ge "$attempts" ]; then
      echo "temporal-admin: gave up waiting for $what after $attempts tries" >&2
      return 1
    fi
    sleep 2
  done
}

serving() { temporal operator cluster health --address "$address" 2>/dev/null | grep -qw SERVING; }
namespace_exists() { temporal operator namespace describe --address "$address" --namespace "$ns" >/dev/null 2>&1; }
attribute_exists() {
  temporal operator search-attribute list --address "$address" --namespace "$ns" 2>/dev/null | grep -qw "$1"
}
# A namespace created a moment ago takes a few seconds to reach every frontend's cache; until then creating an
# attribute in it fails, so attribute creation is retried as a whole.
ensure_attribute() {
  attribute_exists "$1" ||
    temporal operator search-attribute create --address "$address" --namespace "$ns" --name "$1" --type Keyword
}

retry "the Temporal frontend at $address" serving
echo "temporal-admin: $address is serving"

if namespace_exists; then
  echo "temporal-admin: namespace $ns exists"
else
  temporal operator namespace create --address "$address" --namespace "$ns" --retention "$retention"
  retry "namespace $ns" namespace_exists
  echo "temporal-admin: created namespace $ns (retention $retention)"
fi

for attribute in TuneloopModel TuneloopStage TuneloopOutcome; do
  retry "search attribute $attribute" ensure_attribute "$attribute"
  echo "temporal-admin: search attribute $attribute (Keyword) is registered in $ns"
done
