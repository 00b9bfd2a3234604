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
    PYTHONUNBUFFERED=1
ENTRYPOINT ["kstatefun", "run"]
