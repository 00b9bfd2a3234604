# kstatefun worker image: `docker build -t kstatefun .`
# Runs `kstatefun run` with the module.yaml in $KSTATEFUN_MODULE (default: the greeter example).
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 kstatefun
WORKDIR /app

COPY pyproject.toml README.md ./
COPY service ./service
COPY schemas ./schemas
RUN pip install --no-cache-dir . && rm -rf /root/.cache

COPY config ./config
COPY examples ./examples

USER kstatefun
ENV KSTATEFUN_MODULE=/app/config/module.yaml \
    KSTATEFUN_METRICS_PORT=9464 \
    PYTHONUNBUFFERED=1
EXPOSE 9464
# /healthz: alive and the broker answers; /readyz: every assigned partition restored
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['KSTATEFUN_METRICS_PORT'] + '/healthz', timeout=4)"
ENTRYPOINT ["kstatefun", "run"]
