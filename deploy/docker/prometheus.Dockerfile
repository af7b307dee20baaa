# Prometheus and Alertmanager from Debian's packages on a local base (make compose-test); users can
# keep prom/prometheus and prom/alertmanager. One image, two commands.
ARG BASE=cxr-base:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus /alertmanager
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
