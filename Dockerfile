# syntax=docker/dockerfile:1
#
# The Sirius services image: `docker build -t sirius .` at the repository root.
# ENTRYPOINT is the `sirius` CLI, so the command is a subcommand and its flags:
#   docker run --rm sirius migrate
#   docker run --rm -p 9000:9000 sirius ingest --host 0.0.0.0 --port 9000
# Configuration comes from the environment (MICROMEGAS_*, AWS_*; see compose/README.md).
# No HEALTHCHECK here: compose/docker-compose.yml defines one per service.
#
# Works with BuildKit and with the legacy builder (no RUN --mount), so both Docker Compose v2
# and the Debian docker-compose 1.29 can build it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: compile the cffi extension into a wheel, then install it (and every dependency, as
# wheels) into a self-contained virtual environment that the runtime stage copies as is.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Packaging metadata first: changes to the code below do not invalidate this layer.
COPY pyproject.toml setup.py constraints.txt README.md ./
# One COPY per top-level package folder ([tool.setuptools.package-dir] in pyproject.toml).
COPY tracing/ tracing/
COPY otel_bridge/ otel_bridge/
COPY collector/ collector/
COPY lakehouse/ lakehouse/
COPY flight/ flight/
COPY admin/ admin/
COPY identity/ identity/
COPY distributed/ distributed/

# Wheels of the project and of everything it needs (extras server + s3), resolved under the
# project's constraints (environment.md §2); any sdist-only dependency is compiled here too.
RUN pip wheel -c constraints.txt --wheel-dir /wheels '.[server,s3]'

# Install from those wheels only, into /opt/sirius (same Python path as the runtime base image).
RUN python -m venv /opt/sirius \
    && /opt/sirius/bin/pip install --no-index --find-links /wheels -c constraints.txt 'sirius[server,s3]' \
    && /opt/sirius/bin/python -c "import sirius.admin.cli, sirius.collector, sirius.tracing._native"

# ---------------------------------------------------------------------------------------------
# runtime: slim Python, the virtual environment, a non-root user. No compiler, no pip cache.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sirius" \
      org.opencontainers.image.description="Python observability lakehouse, wire-compatible with Micromegas" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/sirius/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 sirius \
    && useradd --system --uid 10001 --gid sirius --home-dir /var/lib/sirius --create-home \
       --shell /usr/sbin/nologin sirius

COPY --from=builder /opt/sirius /opt/sirius

USER 10001:10001
WORKDIR /var/lib/sirius

# ingestion HTTP, OTLP gRPC, OTLP HTTP, FlightSQL, HTTP gateway (DESIGN.md "ports").
EXPOSE 9000 4317 4318 50051 3000

ENTRYPOINT ["sirius"]
CMD ["--help"]
