# Slim image: dependencies in their own cached layer, non-root user, data on a volume.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json \
    SQLITE_PATH=/data/sdr.sqlite3 \
    PORT=8080 \
    SHUTDOWN_GRACE_S=8

WORKDIR /app

# Dependencies first, at the locked versions (hash-checked): this layer is rebuilt only
# when the lock changes, and two builds a month apart run the same code.
COPY requirements/app.lock ./requirements/app.lock
RUN pip install --require-hashes -r requirements/app.lock

COPY . .
RUN useradd --create-home --uid 10001 sdr \
    && mkdir -p /data && chown sdr:sdr /data

USER sdr
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/api/health', timeout=4).status == 200 else 1)"

# `docker stop` sends SIGTERM and kills after 10 s: the bot (web process + its turn
# worker) answers 503 to new webhooks and finishes within SHUTDOWN_GRACE_S (8 s) + ~1 s.
STOPSIGNAL SIGTERM
CMD ["python", "main.py"]
