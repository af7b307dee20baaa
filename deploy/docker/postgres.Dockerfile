# PostgreSQL 15 from Debian's package on a local base (make compose-test). The entrypoint does what
# the official image does with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on an empty volume.
ARG BASE=cxr-base:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres"]
