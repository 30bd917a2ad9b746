# lifecycle service image: uv-built venv, non-root, health-checked.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
WORKDIR /app
# The venv is built at its final path: its scripts' shebangs point there.
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/lifecycle
COPY pyproject.toml uv.lock README.md ./
COPY lifecycle ./lifecycle
COPY connectors ./connectors
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/lifecycle --create-home lifecycle
WORKDIR /var/lib/lifecycle
COPY --from=build /opt/lifecycle /opt/lifecycle
COPY config /etc/lifecycle
COPY playbooks /etc/lifecycle/playbooks
ENV PATH=/opt/lifecycle/bin:$PATH \
    LIFECYCLE_CONFIG=/etc/lifecycle/demo.toml \
    PYTHONUNBUFFERED=1
USER lifecycle
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["lifecycle", "serve", "--host", "0.0.0.0", "--port", "8080"]
