# One image for every service and for migrations. gen/ is committed, so no buf at build or run time;
# TypeScript runs through tsx, a runtime dependency. Give it SHARD_URLS and REDIS_URLS: the embedded
# default (Postgres and redis-server started by the program) is for laptops, not for this image.
FROM node:24-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
# --ignore-scripts: the root postinstall vendors protos from devDependencies, which are not here.
# npm ci rejects a lock file written against a registry mirror that lacks other platforms' optional
# packages (see .ci/run); npm install --no-save then installs the same locked versions.
RUN (npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
      || npm install --omit=dev --ignore-scripts --no-save --no-audit --no-fund) \
    && npm cache clean --force

COPY tsconfig.json ./
COPY gen ./gen
COPY src ./src
COPY scripts/healthcheck.mjs ./scripts/healthcheck.mjs

USER node
ENV PORT=8080 GRPC_PORT=8081
# 8080: every protocol; 8081: native gRPC only (docs/server.md).
EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 CMD ["node", "scripts/healthcheck.mjs"]
# node is PID 1 and handles SIGTERM itself (drain, then exit); no npm wrapper in between.
CMD ["node", "--max-semi-space-size=16", "--no-allocation-site-pretenuring", "--no-memory-reducer", "--import", "tsx", "src/main.ts"]
