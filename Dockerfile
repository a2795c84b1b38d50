# One image for every service; each Deployment (or compose service) picks one with its command:
#   python -m gateway | text_svc | multimodal_svc | image_svc | settings_svc | billing_svc
# and the migration Jobs run `python -m settings_svc migrate` / `python -m billing_svc migrate`.
#
# Reproducible from the lock file: `uv sync --frozen` installs exactly uv.lock's versions (and fails
# rather than re-resolve), uv itself is pinned, and the base images are arguments so that a release
# build pins them by digest:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> \
#                --build-arg NODE_IMAGE=node:22-bookworm-slim@sha256:<digest> -t model-platform .
# (The digests are not written here because they can only be read from the registry at release
# time; a tag alone moves with Debian's security updates.)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# --- the web console (served by the gateway at /), built from its own lock file ------------------
FROM ${NODE_IMAGE} AS console
WORKDIR /src
COPY . .
RUN if [ -f console/package-lock.json ]; then \
        cd console && npm ci --no-audit --no-fund && npm run build; \
    else \
        mkdir -p console/dist; \
    fi

# --- the services' virtual environment: production packages only ---------------------------------
FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# .dockerignore keeps only what the production packages need: every workspace member's
# pyproject.toml (uv reads the whole workspace), the services' and their libraries' sources; no
# tests, no provider stand-ins' or devstack's sources.
COPY . .
# Each service and the workspace libraries it depends on; never the dev group, the provider
# stand-ins or devstack (the root project, which lists them, is not installed). Services whose
# folder does not exist yet are skipped. --no-editable: the venv holds the code itself, so the
# runtime stage needs no source tree.
ARG SERVICES="gateway text-svc multimodal-svc image-svc settings-svc billing-svc"
RUN packages=""; \
    for service in ${SERVICES}; do \
        if [ -f "${service}/pyproject.toml" ]; then packages="${packages} --package ${service}"; fi; \
    done; \
    uv sync --frozen --no-dev --no-editable ${packages} \
    && if /opt/venv/bin/python -I -c "import provider_stand_ins" 2>/dev/null \
          || /opt/venv/bin/python -I -c "import devstack" 2>/dev/null; then \
        echo "stand-ins or devstack reached the production venv" >&2; exit 1; \
    fi

# --- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it (runAsUser 10001).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=console /src/console/dist /opt/console
COPY deploy/docker/healthcheck.py /opt/healthcheck.py
# Bytecode was compiled at build time; the root filesystem is read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_CONSOLE_DIR=/opt/console
WORKDIR /tmp
USER 10001:10001
# For docker / compose: the same checks as the Kubernetes probes (the gateway's /healthz, the gRPC
# services' grpc.health.v1). Kubernetes ignores it and uses its own probes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/opt/healthcheck.py"]
CMD ["python", "-m", "gateway"]
