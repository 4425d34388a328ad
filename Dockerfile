# syntax=docker/dockerfile:1
# mcp-front on one machine: `mcp-front serve` runs the authorization server and every route in
# this one container. The config is /config/mcp-front.yaml, SQLite keeps its state in the /data
# volume, secrets come in as environment variables. docs/deploy.md, "One VM", says how to run it.
# The base is the route images' (infra/image.ts), pinned by digest: every build gets the same bytes.
FROM node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d
# tini as PID 1, as in the route images: it passes SIGTERM on to Node and reaps what stdio
# servers' helpers leave behind (Node as PID 1 reaps only its own children).
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mcp-front/app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY lib ./lib
COPY functions ./functions
COPY services ./services
COPY cli ./cli
COPY infra ./infra
# A named volume starts with its mount point's owner: the node user must be able to write there.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini-static", "--", "/usr/local/bin/node", "/opt/mcp-front/app/cli/mcp-front.ts"]
CMD ["serve", "--config", "/config/mcp-front.yaml"]
