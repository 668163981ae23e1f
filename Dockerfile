# tuneloop's images, built by docker-compose.yml (or by hand):
#   docker build --target runtime    -t tuneloop:0.1.0 .              the API and the CPU worker
#   docker build --target gpu-worker -t tuneloop-gpu-worker:0.1.0 .   the worker on the GPU host (see below)
# There is no compile stage: the runtime runs the TypeScript sources through tsx, a regular dependency.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- production dependencies only ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The cache mount keeps npm's download cache out of the image and across builds.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --omit=dev --no-audit --no-fund --loglevel=error

# ---- the API and the CPU worker -----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    TUNELOOP_HOME=/var/lib/tuneloop
WORKDIR /app
# Code and dependencies stay owned by root: the process (user `node`) can read them but not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY scripts ./scripts
COPY samples ./samples
# The only place the process writes (TUNELOOP_HOME); docker-compose.yml mounts a volume here for the GPU worker.
RUN mkdir -p /var/lib/tuneloop && chown node:node /var/lib/tuneloop
USER node
EXPOSE 8080
ENTRYPOINT ["node", "bin/tuneloop"]
CMD ["api"]

# ---- the GPU worker -----------------------------------------------------------------------------------------------
# The same Node worker (task queue tuneloop-gpu) plus the Python trainer it launches as a child process. The
# trainer package (gpu-worker/) has not landed yet, so this stage only prepares its virtual environment; when it
# lands, add `!gpu-worker/` to .dockerignore and, before `USER node`:
#   COPY gpu-worker /opt/trainer/src
#   RUN /opt/trainer/bin/pip install --no-cache-dir /opt/trainer/src
# No CUDA base image is needed: the NVIDIA container runtime mounts the driver, and PyTorch's CUDA wheels carry
# their own CUDA libraries.
FROM runtime AS gpu-worker
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/trainer
# Base models downloaded by the trainer are cached on the volume docker-compose.yml mounts at TUNELOOP_HOME.
ENV PATH=/opt/trainer/bin:${PATH} \
    HF_HOME=/var/lib/tuneloop/huggingface
USER node
CMD ["worker", "--gpu"]
