# Add-on image: the ECU proxy service plus the companion integration bundle.
# The build context is the whole repository. build.yaml names the base image per
# architecture; the default below keeps plain `docker build .` working without it.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.14-alpine3.22
# hadolint ignore=DL3006
FROM ${BUILD_FROM}

SHELL ["/bin/ash", "-o", "pipefail", "-c"]

ENV \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    S6_SERVICES_GRACETIME=15000 \
    S6_KILL_GRACETIME=3000

WORKDIR /usr/src/ecu-proxy

# Dependencies first (binary wheels only: no compiler is ever installed), so a code
# change does not reinstall them. The lock pins requirements/service.txt with the
# hashes of every published file, so pip installs exactly those files or fails.
COPY requirements/service.lock requirements/service.lock
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes \
    -r requirements/service.lock

COPY pyproject.toml README.md ./
COPY addon/ecu_proxy addon/ecu_proxy
# ecu_proxy/contract links to the API contract that ships inside the integration.
COPY integration/custom_components/apsystems_ema_proxy/contract integration/custom_components/apsystems_ema_proxy/contract
RUN pip install --no-cache-dir --no-deps . \
    && apsystems-ecu-proxy --version \
    && rm -rf /usr/src/ecu-proxy

WORKDIR /

COPY integration/custom_components/apsystems_ema_proxy /usr/share/apsystems_ecu_proxy/apsystems_ema_proxy
COPY addon/rootfs /

ARG BUILD_VERSION=0.1.0
LABEL \
    org.opencontainers.image.title="APsystems ECU Proxy" \
    org.opencontainers.image.description="Relays APsystems ECU uploads to EMA and serves the decoded values to Home Assistant" \
    org.opencontainers.image.version="${BUILD_VERSION}" \
    org.opencontainers.image.licenses="Apache-2.0" \
    org.opencontainers.image.source="https://github.com/apsystems-ecu-proxy/apsystems-ecu-proxy"

EXPOSE 8995/tcp 8996/tcp 8997/tcp 8990/tcp \
    8998/tcp 9001/tcp 9002/tcp 9003/tcp 9004/tcp 9220/tcp 9222/tcp 9227/tcp 9228/tcp

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8990/api/health', timeout=8)"]
