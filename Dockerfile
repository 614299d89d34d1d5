# syntax=docker/dockerfile:1
# One image for the API, the workers and the scaler; the command picks the part:
#   docker run IMAGE api | worker --pool base | worker --pool burst | scaler | mysql-check
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
# without it every cold start (every burst pod on ACI) compiled each module it imports
# (bench/image_weight.py measures both).
RUN python -m venv /opt/imgburst \
    && /opt/imgburst/bin/pip install --no-compile . \
    && rm -rf /opt/imgburst/lib/python3.11/site-packages/pip \
              /opt/imgburst/lib/python3.11/site-packages/setuptools \
    && /opt/imgburst/bin/python -m compileall -q -j 0 /opt/imgburst/lib

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/imgburst/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMGBURST_HOME=/tmp/imgburst
# /var/lib/imgburst: a volume there (docker compose's first-run key) is the user's to write
RUN groupadd --system --gid 10001 imgburst \
    && useradd --system --uid 10001 --gid imgburst --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin imgburst \
    && install -d -o 10001 -g 10001 -m 700 /var/lib/imgburst
COPY --from=build /opt/imgburst /opt/imgburst
USER 10001:10001
EXPOSE 8000
# Exec form: `imgburst` is PID 1, so `imgburst worker` runs Celery in PID 1 and SIGTERM
# reaches it (warm shutdown: running jobs finish, unstarted ones go back to the queue).
ENTRYPOINT ["imgburst"]
CMD ["api"]
