# syntax=docker/dockerfile:1
# sgwatch container image.
#   docker build -t sgwatch:dev .
#   docker run --rm sgwatch:dev --help
# Stage "build" makes a wheel and installs it (with its dependencies) into the venv
# /opt/sgwatch; the final stage copies only that venv onto the same slim base: no compiler,
# no pip cache, no source tree.

FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM base AS build
WORKDIR /src
# README.m[d]: the readme is optional for the build (the glob matches nothing if it is absent).
COPY pyproject.toml README.m[d] ./
COPY sgwatch ./sgwatch
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/sgwatch \
 && /opt/sgwatch/bin/pip install --no-cache-dir /wheels/*.whl \
 && /opt/sgwatch/bin/sgwatch --version

FROM base AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sgwatch" \
      org.opencontainers.image.description="Watch Alibaba Cloud ECS security groups for drift and new internet exposure" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

COPY --from=build /opt/sgwatch /opt/sgwatch
ENV PATH=/opt/sgwatch/bin:$PATH

# The state directory belongs to the runtime user so that a fresh named volume mounted there
# inherits the ownership; /etc/sgwatch receives the config (ConfigMap or bind mount).
RUN mkdir -p /var/lib/sgwatch /etc/sgwatch \
 && chown 10001:10001 /var/lib/sgwatch \
 && chmod 0750 /var/lib/sgwatch

USER 10001:10001
WORKDIR /var/lib/sgwatch
EXPOSE 9108

# slim has no curl: ask /healthz with the standard library (urlopen raises on non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

ENTRYPOINT ["sgwatch"]
CMD ["run", "--config", "/etc/sgwatch/config.yaml"]
