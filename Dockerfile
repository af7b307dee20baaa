# One image for every service; the command picks which one runs.
# BASE: an official Python image by default. `make compose-test` builds from a Debian base made
# locally with debootstrap (deploy/docker/README.md), which has no Python: Debian's python3 is taken.
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Extra CA certificates (a TLS-inspecting proxy's) for pip and the services: deploy/docker/certs/*.crt.
COPY deploy/docker/certs/ /usr/local/share/ca-certificates/
RUN set -e; \
    missing=""; \
    command -v python3 >/dev/null || missing="python3 python3-venv"; \
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then missing="$missing ca-certificates"; fi; \
    if [ -n "$missing" ]; then \
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    if command -v update-ca-certificates >/dev/null; then update-ca-certificates >/dev/null; fi; \
    python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY models ./models
# pip checks TLS against the system bundle, so the extra certificates above apply to it too.
RUN if [ -f /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi; \
    pip install --quiet '.'
RUN useradd --system --uid 10001 cxr && mkdir -p /data && chown cxr /data
USER cxr
ENV CXR_DATA_DIR=/data CXR_BUNDLE_PATH=/app/models/reference
EXPOSE 8000
CMD ["python", "-m", "services.gateway"]
