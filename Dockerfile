# One image for every umw service; the command picks the service (`umw serve query`).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY bin bin
COPY cli cli
COPY runtime runtime
COPY services services
COPY gen gen
COPY migrations migrations
COPY config config
ENV UMW_HOST=0.0.0.0 UMW_CERTS_DIR=/certs NODE_ENV=production
USER node
ENTRYPOINT ["node", "bin/umw.mjs"]
