# The mltk image: every mltk command, and `mltk serve` for SageMaker, Kubernetes or plain Docker.
#
#   docker build -t mltk .                             # CPU (the default)
#   docker build -t mltk:gpu --build-arg VARIANT=gpu . # + tensorflow[and-cuda]; run with --gpus all
#   docker run --rm -p 8080:8080 -v "$PWD/analysis:/opt/ml/model:ro" mltk serve
#   docker run --rm -v "$PWD:/data" -w /data mltk colors photos/
#
# The model is read from /opt/ml/model (SageMaker unpacks model.tar.gz there; a model.tar.gz left
# there is unpacked by mltk; bind-mount a model folder there, or bake one in with `FROM mltk` +
# `COPY analysis /opt/ml/model`), or given as s3://, gs:// (with gcsfs) or https:// URL. No
# VOLUME is declared so that derived images can do the latter.
#
# The base image names its Debian release so that the pinned tini version below stays valid.

# Build stage: a virtual environment with mltk and its dependencies, copied whole into the
# runtime stage, which so holds neither the source nor pip's build tools' leftovers.
FROM python:3.11-slim-bookworm AS build

ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY configs ./configs
COPY mltk ./mltk

RUN case "$VARIANT" in \
        cpu) extras="[grpc,storage]" ;; \
        gpu) extras="[gpu,grpc,storage]" ;; \
        *) echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 1 ;; \
    esac \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "/src${extras}" \
    && /opt/venv/bin/mltk --version


FROM python:3.11-slim-bookworm

ARG VARIANT=cpu
LABEL org.opencontainers.image.title="mltk" \
      org.opencontainers.image.description="Command-line machine-learning utilities; mltk serve" \
      com.mltk.variant="${VARIANT}" \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true

# tini as PID 1: a process that is PID 1 gets no default signal dispositions, so without it
# `docker stop` (SIGTERM) would be ignored by every command that installs no handler of its own
# (all but `mltk serve`), and orphaned grandchildren would never be reaped. tini forwards
# SIGTERM/SIGINT to mltk and exits with its status.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID, so that Kubernetes' runAsNonRoot can check it without a runAsUser.
RUN useradd --uid 1000 --user-group --no-log-init --create-home --shell /usr/sbin/nologin mltk \
    && mkdir -p /opt/ml/model

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/mltk \
    MLTK_SERVE_HOST=0.0.0.0 \
    SAGEMAKER_BIND_TO_PORT=8080

USER 1000:1000
WORKDIR /home/mltk
# 8081: the Open Inference Protocol over gRPC, when started with --grpc-port 8081 (or
# MLTK_SERVE_GRPC_PORT=8081)
EXPOSE 8080 8081

# Docker's own health status (Kubernetes and SageMaker probe the routes themselves). Health
# routes need no token. The start period covers importing TensorFlow and warming the models.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080') + '/v2/health/ready', timeout=4)"]

# SageMaker starts the container as `docker run IMAGE serve`, so the command is the argument.
ENTRYPOINT ["/usr/bin/tini", "--", "mltk"]
CMD ["--help"]
