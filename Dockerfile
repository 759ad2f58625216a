# SciStream gateway image: s2cs (default), s2ds, s2uc and s2app.
#   docker build -t scistream .
#   docker run --init -v /etc/scistream:/etc/scistream:ro -p 5000:5000 -p 5100-5200:5100-5200 scistream
#     (runs `s2cs start --config /etc/scistream/s2cs.toml`; or give the flags: ... scistream start --listener-ip ADDR)
#   docker run --rm scistream --help;  docker run --rm --entrypoint s2uc scistream --help
# Two facilities on one host: deploy/compose.yaml. See docs/deployment.md.

# Build stage: the full Debian image has the C compiler the SO_LINGER addon needs.
FROM node:20-bookworm AS build
WORKDIR /opt/scistream
COPY package.json package-lock.json tsconfig.json ./
COPY native/ native/
COPY proto/ proto/
COPY src/ src/
COPY bin/ bin/
COPY scripts/ scripts/
# npm ci installs the locked dependencies and runs the package's install (the addon,
# native/build.mjs) and prepare (the TypeScript build) scripts. build:native fails the
# build if the addon could not be compiled; then drop what only building needed.
RUN npm ci --no-audit --no-fund
RUN npm run build:native
RUN npm prune --omit=dev --no-audit --no-fund && rm -rf src scripts tsconfig.json native/*.c native/*.h

# Run stage: no compiler, no TypeScript.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SCISTREAM_HOME=/var/lib/scistream
COPY --from=build /opt/scistream /opt/scistream
COPY deploy/docker/healthcheck.mjs /opt/scistream/deploy/docker/healthcheck.mjs
# The programs as `npm install -g` would put them; each is node running bin/<name>.js
# itself, so the signals the container engine sends reach the program (no npx, no shell).
RUN for p in s2cs s2ds s2uc s2app; do ln -s /opt/scistream/bin/$p.js /usr/local/bin/$p; done \
 && groupadd --system scistream \
 && useradd --system --gid scistream --home-dir /var/lib/scistream --shell /usr/sbin/nologin scistream \
 && install -d -o scistream -g scistream -m 700 /var/lib/scistream
USER scistream
WORKDIR /var/lib/scistream
# s2cs's self-signed control certificate (s2cs/tls/) and its workers' sockets and logs.
VOLUME ["/var/lib/scistream"]
# The control port and the default --port-range (data listeners); 9100: --metrics-listen, if set.
EXPOSE 5000/tcp 5100-5200/tcp 9100/tcp
# SIGTERM: release every stream, stop the workers, exit 0.
STOPSIGNAL SIGTERM
# GET /healthz when SCISTREAM_METRICS_LISTEN names the --metrics-listen address;
# otherwise whether the control port (SCISTREAM_CONTROL_PORT, 5000) accepts connections.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/opt/scistream/deploy/docker/healthcheck.mjs"]
ENTRYPOINT ["s2cs"]
CMD ["start", "--config", "/etc/scistream/s2cs.toml"]
