# Redis from Debian's package on a local base (make compose-test); users can keep redis:7.
ARG BASE=cxr-base:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
USER redis
CMD ["redis-server", "--save", "", "--appendonly", "no"]
