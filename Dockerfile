# The file service as a production image: the compiled runtime and service, production dependencies only, a
# non-root user, and `weft start` as PID 1 (it re-executes itself under an init that reaps orphans and forwards
# signals, so `docker stop` drains every worker). Build from the repository's root:
#   docker build -t weft-files .
#   docker run -p 3000:3000 -v files-data:/data weft-files
# compose.yaml runs it on Redis, PostgreSQL and MinIO with several replicas.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY apps/files/package.json apps/files/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY apps/files/tsconfig.build.json apps/files/
COPY apps/files/src apps/files/src
RUN npm run build

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    FILES_HOST=0.0.0.0 \
    FILES_PORT=3000 \
    FILES_DATA_DIR=/data \
    WEFT_METRICS_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
COPY apps/files/package.json apps/files/
# What the .ci/run production check installs the same way: no dev dependency, no TypeScript source.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist dist
COPY --from=build /src/apps/files/dist apps/files/dist
COPY apps/files/weft.config.mjs apps/files/
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 3000 9464
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3000/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The supervisor itself, not npm: npm does not forward SIGTERM, and its workers would outlive a `docker stop`.
ENTRYPOINT ["node", "dist/cli/weft.js", "start", "apps/files/dist/server.js", "--config", "apps/files/weft.config.mjs", "--name", "files", "--metrics-port", "9464"]
