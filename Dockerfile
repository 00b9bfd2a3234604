# kstatefun worker image: `docker build -t kstatefun .` (podman: `podman build --format docker`,
# which keeps the HEALTHCHECK). Runs `kstatefun run` with the module.yaml in $KSTATEFUN_MODULE
# (default: the greeter example). Two stages: the wheels are built in `build`; the runtime stage
# only installs them, so no build backend, compiler or source tree ends up in the image.
# kstatefun's wheel is the compiled build (KSTATEFUN_COMPILE=1, hatch_build.py): its hot path
# compiled with mypyc. A build that cannot compile fails; it never ships the pure one instead.
# `kstatefun --version` in the image says "(build: compiled)".

FROM python:3.11-slim AS build
WORKDIR /src
# A C compiler for mypyc's output, and the Python headers where the base image lacks them
# (python:3.11-slim has its own; a base with Debian's python3 needs python3-dev).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if [ ! -f "$(python -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ]; then \
         apt-get install -y --no-install-recommends python3-dev; fi \
    && rm -rf /var/lib/apt/lists/*
# A wheel of every dependency, so the runtime stage needs no index. Its own layer, which only
# a change to pyproject.toml rebuilds: editing the code rebuilds just kstatefun's wheel.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt
COPY README.md hatch_build.py ./
COPY service ./service
COPY schemas ./schemas
RUN KSTATEFUN_COMPILE=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && cd /wheels && sha256sum *.whl > /wheels.sha256

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 kstatefun
WORKDIR /app
# The wheels' checksums are copied first so that any changed wheel invalidates the cached
# install below (buildah does not key a RUN's cache on what it bind-mounts from another stage).
COPY --from=build /wheels.sha256 /usr/local/share/kstatefun/wheels.sha256
# A bind mount, not a COPY: the wheels never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels kstatefun \
    && kstatefun --help > /dev/null \
    && kstatefun --version | grep -F "(build: compiled)"

COPY config ./config
COPY examples ./examples

USER kstatefun
ENV KSTATEFUN_MODULE=/app/config/module.yaml \
    KSTATEFUN_METRICS_PORT=9464 \
    KSTATEFUN_PLAYGROUND_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 9464
# Healthy = ready: every partition assigned to the worker is restored and it is processing
# (/readyz). For a liveness probe that only asks "alive and the broker answers", use /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['KSTATEFUN_METRICS_PORT'] + '/readyz', timeout=4)"
ENTRYPOINT ["kstatefun", "run"]
