# One image for every umw service; the command picks the service (`umw serve query`).
# The build stage compiles the TypeScript (npm run build: dist/ with migrations and the compiled policy); the image holds
# only the JavaScript and the production dependencies, so nothing compiles or transpiles at run time.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.sh scripts/build.sh
COPY cli cli
COPY runtime runtime
COPY services services
COPY gen gen
COPY migrations migrations
COPY policy/authz.wasm policy/authz.wasm
RUN scripts/build.sh dist && rm dist/scripts

FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY bin bin
COPY --from=build /src/dist dist
COPY config config
ENV UMW_HOST=0.0.0.0 UMW_CERTS_DIR=/certs NODE_ENV=production
USER node
ENTRYPOINT ["node", "bin/umw.mjs"]
