# One image for every service; the command picks which one runs.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY models ./models
RUN pip install '.[dicomweb,fhir]'
RUN useradd --system --uid 10001 cxr && mkdir -p /data && chown cxr /data
USER cxr
ENV CXR_DATA_DIR=/data CXR_BUNDLE_PATH=/app/models/reference
EXPOSE 8000
CMD ["python", "-m", "services.gateway"]
