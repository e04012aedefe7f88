# syntax=docker/dockerfile:1
# The worker image. Build it with `scripts/build-image` (podman or docker; it also provides a Debian-built base
# where python:3.12-slim cannot be pulled), or `docker build -t binance-ingest:0.1.0 .` at the repository root.
# Stage 1 builds the project's wheel and installs it with every dependency into a virtualenv, then removes
# pip and setuptools from it; stage 2 copies only that virtualenv onto a clean base, so installers, caches,
# the sources and any build tooling stay out.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY ingest/ ingest/
# A regular (non-editable) install of the wheel: the Avro schemas ship inside it as package data
# (ingest/schemas links to the top-level schemas/), so the sources are not needed at run time.
# The optional build secret "ca-bundle" is the build machine's CA bundle, for pip behind a TLS-intercepting
# proxy (scripts/build-image passes it); a secret mount is never stored in a layer.
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/venv/bin/pip install --no-compile /src \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="binance-ingest" \
      org.opencontainers.image.description="Binance spot market data to Kafka (Avro)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid ingest --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ingest
COPY --from=build /opt/venv /opt/venv
# Bytecode is compiled at build time (read-only root filesystem at run time, nothing to write).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 9108
# /healthz answers while the process is alive; the port follows INGEST_METRICS_PORT like the worker does.
# Python, not wget/curl: the image has neither.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INGEST_METRICS_PORT', '9108'), timeout=4)"]
ENTRYPOINT ["ingest"]
CMD ["run"]
