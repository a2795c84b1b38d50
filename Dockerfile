# One image for every service; the command picks which one runs (python -m <package>).
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY common common
COPY provider-plumbing provider-plumbing
COPY generated generated
COPY stand-ins stand-ins
COPY gateway gateway
COPY text-svc text-svc
COPY settings-svc settings-svc
COPY billing-svc billing-svc
COPY devstack devstack
RUN uv sync --frozen --all-packages --no-dev

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 65534
