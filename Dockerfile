# syntax=docker/dockerfile:1
#
# tweetflow: one image for every service. The command picks the role:
#   tweetflow consume | serve | ingest | ...          (default: `tweetflow --help`)
#   dagster code-server start -m analytics_pipeline.definitions -h 0.0.0.0 -p 4000
#   dagster-webserver / dagster-daemon                 (docker compose runs these from it too)
#   python /app/deploy/scripts/init_stack.py           (topics + schema on external services)
# Build from the project root:  docker build -t tweetflow:0.1.0 .
#
# The image always talks to a real ClickHouse server (CLICKHOUSE_URL must be set): the embedded
# endpoint's engine (chdb-core, ~530 MB) is left out. See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
# builder: the locked dependencies and the project in /opt/venv, the dbt manifest parsed once.
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app

# Dependencies first (their own layer: code changes do not reinstall them), exactly as locked.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-install-package chdb-core

# Dagster's Postgres storage and Kubernetes run launcher, which deployments need and uv.lock does
# not hold yet. Installed with every locked package pinned as a constraint, so they add packages
# but never move a locked one; the versions follow the locked dagster (1.13.N <-> 0.29.N).
ARG DAGSTER_DEPLOY_PACKAGES="dagster-postgres==0.29.27 dagster-k8s==0.29.27"
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --no-dev --no-emit-project --no-hashes --output-file /tmp/locked.txt \
    && uv pip install --python /opt/venv/bin/python --constraint /tmp/locked.txt \
       ${DAGSTER_DEPLOY_PACKAGES}

# The project itself, installed editable so tweetflow's PROJECT_ROOT is /app (dbt_project/ and
# the Dagster definitions are found there). --inexact keeps the packages installed just above.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --inexact --no-install-package chdb-core \
    && /opt/venv/bin/python -m compileall -q tweetflow streaming ingest_service query_service \
       analytics_pipeline bench deploy/scripts \
    && /opt/venv/bin/python -m analytics_pipeline.dbt_models \
    && mkdir -p dbt_project/logs

# ---------------------------------------------------------------------------------------------
# runtime: the slim Python, the virtualenv and the project; nothing else.
FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric UID: Kubernetes' runAsNonRoot can verify it, the manifests run as it.
RUN groupadd --system --gid 10001 tweetflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/tweetflow --create-home \
       --shell /usr/sbin/nologin tweetflow
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TWEETFLOW_DATA_DIR=/var/lib/tweetflow \
    DAGSTER_HOME=/opt/dagster/dagster_home
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
# The code stays root-owned (read-only to the service); dbt writes its target/ and logs/, the
# services their data dir, Dagster its home and local storage.
RUN mkdir -p /var/lib/tweetflow /opt/dagster/dagster_home /opt/dagster/storage \
    && chown -R 10001:10001 /var/lib/tweetflow /opt/dagster /app/dbt_project/target \
       /app/dbt_project/logs
WORKDIR /app
USER 10001:10001
# query (gRPC, metrics), ingest (gRPC), Dagster code location and webserver, consumer metrics
EXPOSE 50051 9500 50052 4000 3000 9400
CMD ["tweetflow", "--help"]
