# syntax=docker/dockerfile:1
# redis-gateway as a container: `docker build -t redis-gateway .`, then see compose.yaml.
# Configuration is by environment (REDIS_GATEWAY_*, see the README) or a mounted TOML file
# named by REDIS_GATEWAY_CONFIG; tokens live in /var/lib/redis-gateway (a volume).

FROM python:3.13-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels of the gateway and its dependencies, so the final image needs no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.13-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/redis-gateway \
        --create-home --shell /usr/sbin/nologin gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/redis_gateway-*.whl \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/redis-gateway
# A path, not a secret: only token hashes are ever written there.
# hadolint ignore=DL3064
ENV PYTHONUNBUFFERED=1 \
    REDIS_GATEWAY_HOST=0.0.0.0 \
    REDIS_GATEWAY_PORT=8079 \
    REDIS_GATEWAY_TOKENS_FILE=/var/lib/redis-gateway/tokens.json
VOLUME ["/var/lib/redis-gateway"]
EXPOSE 8079
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('REDIS_GATEWAY_PORT', '8079') + '/healthz', timeout=2)"]
ENTRYPOINT ["redis-gateway"]
CMD ["serve"]
