# syntax=docker/dockerfile:1
# Two images from one file; the command picks the part:
#   docker build -t imgburst .                         api | scaler | mysql-check | worker
#   docker build -t imgburst-worker --target worker .  worker --pool base | --pool burst
# Kept small on purpose: ACI pulls it on every burst pod start (a 900 MB image took
# ~110 s to start there, a 44 MB one ~60 s). No HEALTHCHECK: probes use GET /healthz.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imgburst ./imgburst
# Every dependency ships as a wheel: no compiler is needed, and none reaches the image.
# Bytecode is compiled here, once: the pods run read-only with PYTHONDONTWRITEBYTECODE, so
# without it every cold start (every burst pod on ACI) compiled each module it imports.
# The workers' environment leaves out the kubernetes client, which only the scaler uses:
# 251 MB against 374 MB, as fast to start (bench/image_weight.py, BENCHMARKS.md).
RUN python -m venv /opt/imgburst \
    && /opt/imgburst/bin/pip install --no-compile . \
    && rm -rf /opt/imgburst/lib/python3.11/site-packages/pip \
              /opt/imgburst/lib/python3.11/site-packages/setuptools \
    && cp -a /opt/imgburst /opt/worker \
    && /opt/imgburst/bin/python -m compileall -q -j 0 /opt/imgburst/lib
# (compiled as the path it will have in the worker image, so tracebacks name it)
RUN rm -rf /opt/worker/lib/python3.11/site-packages/kubernetes \
           /opt/worker/lib/python3.11/site-packages/kubernetes-*.dist-info \
    && /opt/worker/bin/python -m compileall -q -j 0 -s /opt/worker -p /opt/imgburst \
       /opt/worker/lib

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/imgburst/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMGBURST_HOME=/tmp/imgburst
# /var/lib/imgburst: a volume there (docker compose's first-run key) is the user's to write
RUN groupadd --system --gid 10001 imgburst \
    && useradd --system --uid 10001 --gid imgburst --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin imgburst \
    && install -d -o 10001 -g 10001 -m 700 /var/lib/imgburst
USER 10001:10001
EXPOSE 8000
# Exec form: `imgburst` is PID 1, so `imgburst worker` runs Celery in PID 1 and SIGTERM
# reaches it (warm shutdown: running jobs finish, unstarted ones go back to the queue).
ENTRYPOINT ["imgburst"]

# The workers' image (`--target worker`): base workers and burst pods on ACI.
FROM runtime AS worker
COPY --from=build /opt/worker /opt/imgburst
CMD ["worker", "--pool", "base"]

# The default image: the API, the scaler, `mysql-check` (and a worker, if you like).
FROM runtime AS full
COPY --from=build /opt/imgburst /opt/imgburst
CMD ["api"]
