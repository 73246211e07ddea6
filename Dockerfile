# One image, two targets: `api` (FastAPI) and `worker` (Celery + ONNX Runtime).
# GPU workers: docker build --target worker --build-arg ORT_PACKAGE=onnxruntime-gpu \
#   --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 ...  (or use the compose profile)
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    RESTORE_DATA_DIR=/data
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY workers workers
COPY models models
RUN pip install . && useradd --system --uid 10001 restore && mkdir -p /data \
    && chown restore /data
USER restore
VOLUME ["/data"]

FROM base AS api
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live')" || exit 1
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]

FROM base AS worker
ARG ORT_PACKAGE=onnxruntime
USER root
RUN pip install "$ORT_PACKAGE>=1.18"
USER restore
HEALTHCHECK --interval=30s --timeout=10s --retries=3 \
  CMD celery -A workers.celery_app inspect ping -d "worker@$HOSTNAME" --timeout 5 || exit 1
CMD ["celery", "-A", "workers.celery_app", "worker", "--loglevel=INFO", "--hostname=worker@%h"]
