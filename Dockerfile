# syntax=docker/dockerfile:1
# loom-agent container image: `docker build -t loom-agent .`
#
# Two stages: the first turns the package and its dependencies into wheels (every dependency ships a
# manylinux wheel for Python 3.11, so no compiler is needed); the second installs them from a bind
# mount, so neither the wheels nor pip's cache end up in a layer.
#
# Run it with a config mounted at /etc/loom-agent/config.yaml and a writable /data for the event
# store (store.path: /data/loom-agent.db); see docker-compose.yml and deploy/kubernetes/.

FROM python:3.11-slim-bookworm AS wheels
WORKDIR /src
# only what the package build reads: pyproject.toml names README.md as the long description
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOOM_AGENT_LOG_FORMAT=json
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels loom-agent \
 && groupadd --system --gid 10001 loom \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin loom \
 && mkdir -p /data /etc/loom-agent \
 && chown 10001:10001 /data
# the event store and the generated HMAC key live here; a named volume copies this ownership
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 9464
# no curl in the image: the standard library asks /-/healthy on the port LOOM_AGENT_LISTEN names
# (9464 when unset; a config listening elsewhere should set LOOM_AGENT_LISTEN to match)
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = (os.environ.get('LOOM_AGENT_LISTEN') or ':9464').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/-/healthy', timeout=4)"]
ENTRYPOINT ["python", "-m", "agent"]
CMD ["run", "--config", "/etc/loom-agent/config.yaml"]
