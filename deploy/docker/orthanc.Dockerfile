# Orthanc and its DICOMweb plugin from Debian's packages on a local base (make compose-test);
# users can keep jodogne/orthanc-plugins. The package's own /etc/orthanc is not read: the command
# names the folder with deploy/orthanc/orthanc.json.
ARG BASE=cxr-base:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb \
    && rm -rf /var/lib/apt/lists/*
CMD ["Orthanc", "/etc/cxr-orthanc/"]
