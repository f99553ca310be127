# syntax=docker/dockerfile:1
# idgen: one static binary (serve, compensate, keygen, healthcheck, token).
#
# Normal machine:   docker build -t idgen/idgen:dev .
# No registry:      make images  (passes local base images as build args and
#                   a vendored build context; see scripts/images.sh)
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
# A vendored context (made by `make images`) needs no module download.
COPY . .
RUN if [ -f vendor/modules.txt ]; then echo "using vendor/"; else go mod download; fi
ARG VERSION=dev
ARG COMMIT=unknown
RUN go build -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/idgen ./cmd/idgen \
 && /out/idgen --version \
 && mkdir -p /out/secrets /out/data

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="idgen" \
      org.opencontainers.image.description="Distributed transaction ID service: unique, sortable, auditable IDs with Saga compensation" \
      org.opencontainers.image.source="https://github.com/idgen/idgen" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/idgen /usr/local/bin/idgen
# Mount points owned by the service user: a fresh named volume takes their
# ownership, so the service writes its keys and data without root.
COPY --from=build --chown=65532:65532 /out/secrets /secrets
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
EXPOSE 8080
ENV IDGEN_LISTEN=:8080 IDGEN_DATA_DIR=/data
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/idgen", "healthcheck", "--url", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["/usr/local/bin/idgen"]
CMD ["serve"]
