# syntax=docker/dockerfile:1
# The worker image: `docker build -t binance-ingest:0.1.0 .` at the repository root.
# Stage 1 resolves and installs every dependency into a virtualenv; stage 2 copies only that virtualenv
# and the sources onto a clean slim base, so pip's caches and any build tooling stay out of the image.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest/ ingest/
COPY schemas/ schemas/
# Editable on purpose: ingest/avro.py reads the Avro files from <source root>/schemas, which a regular
# install would leave behind. The sources live at /app in both stages, so the link stays valid.
RUN /opt/venv/bin/pip install -e /app

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="binance-ingest" \
      org.opencontainers.image.description="Binance spot market data to Kafka (Avro)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid ingest --no-create-home --shell /usr/sbin/nologin ingest
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 9108
# /healthz answers while the process is alive; the port follows INGEST_METRICS_PORT like the worker does.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INGEST_METRICS_PORT', '9108'), timeout=4)"]
ENTRYPOINT ["ingest"]
CMD ["run"]
