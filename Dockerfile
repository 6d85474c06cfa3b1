# trackflow worker / API image.
#   docker build -t trackflow .
#   docker run --rm trackflow                 # worker (default)
#   docker run --rm -p 8000:8000 trackflow trackflow api
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRACKFLOW_DATA_DIR=/var/lib/trackflow

WORKDIR /app

COPY . /app
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/trackflow --create-home \
        --shell /usr/sbin/nologin trackflow \
    && chown -R trackflow:trackflow /var/lib/trackflow

USER trackflow
VOLUME ["/var/lib/trackflow"]
EXPOSE 8000

CMD ["trackflow", "worker"]
