# lifecycle service image: a uv-built venv from uv.lock, numeric non-root user, exec-form
# health check, playbooks and configuration in the image, state in the volume /var/lib/lifecycle.
# Build with a HEALTHCHECK-preserving format, e.g. `docker build -t lifecycle .` or
# `buildah bud --format docker -t lifecycle .`; docs/operations.md, "The container".
#
# BASE_IMAGE: tests build on a local stand-in (scripts/container-base-standin.sh) where no
# registry is reachable. For reproducible production builds pin it by digest
# (--build-arg BASE_IMAGE=python:3.11-slim@sha256:...).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Exactly the uv the project is developed and tested with.
ARG UV_VERSION=0.13.9
RUN --mount=type=cache,target=/root/.cache/pip pip install "uv==${UV_VERSION}"
WORKDIR /src
# The venv is built at its final path (its scripts' shebangs point there), with the base image's
# Python, compiled to bytecode (the non-root user cannot write __pycache__ at run time).
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/lifecycle
# Dependencies first, from the lock file alone: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY lifecycle ./lifecycle
COPY connectors ./connectors
# The wheel carries the playbooks too (lifecycle/shipped_playbooks): found with no configuration.
COPY playbooks ./playbooks
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-editable

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 lifecycle \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
       --home-dir /var/lib/lifecycle --shell /usr/sbin/nologin lifecycle \
    && mkdir -p /var/lib/lifecycle \
    && chown 10001:10001 /var/lib/lifecycle \
    && chmod 0750 /var/lib/lifecycle
COPY --from=build /opt/lifecycle /opt/lifecycle
# The image's configuration: the demo with absolute paths (state under /var/lib/lifecycle,
# playbooks in /etc/lifecycle/playbooks). Replace it by mounting a file at the same path, or
# point LIFECYCLE_CONFIG elsewhere.
COPY config/container.toml /etc/lifecycle/lifecycle.toml
COPY playbooks /etc/lifecycle/playbooks
ENV PATH=/opt/lifecycle/bin:$PATH \
    LIFECYCLE_CONFIG=/etc/lifecycle/lifecycle.toml \
    LIFECYCLE_HOST=0.0.0.0 \
    LIFECYCLE_PORT=8080 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/lifecycle
VOLUME ["/var/lib/lifecycle"]
USER 10001:10001
EXPOSE 8080
# Ready = the database answers and the evidence key is loaded (GET /readyz is 200). Exec form:
# no shell in the probe; it follows LIFECYCLE_PORT.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('LIFECYCLE_PORT', '8080'); sys.exit(0 if u.urlopen('http://127.0.0.1:' + port + '/readyz', timeout=2).status == 200 else 1)"]
CMD ["lifecycle", "serve"]
