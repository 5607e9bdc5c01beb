# The iatp image: one static binary on a distroless base, run as non-root.
#
#   docker build -t iatp .
#   docker run --rm iatp demo
#   docker run --rm -p 8001:8001 -v "$PWD/examples/manifests:/etc/iatp:ro" \
#       -e IATP_ADMIN_TOKEN -e IATP_TRUSTED_USER_OVERRIDE_TOKEN \
#       iatp sidecar --agent-url http://agent:8000 --manifest /etc/iatp/secure_bank.json \
#                    --listen :8001 --data-dir /var/lib/iatp
#
# Mount a volume at /var/lib/iatp to keep the flight recorder across
# containers. examples/kubernetes/sidecar.yaml runs it next to an agent.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.1.0-dev
RUN CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/iatp/iatp/internal/cli.Version=${VERSION}" \
        -o /out/iatp ./cmd/iatp \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/iatp /usr/local/bin/iatp
COPY --from=build --chown=65532:65532 /out/data /var/lib/iatp
USER 65532:65532
WORKDIR /var/lib/iatp
VOLUME ["/var/lib/iatp"]
EXPOSE 8001
ENTRYPOINT ["/usr/local/bin/iatp"]
CMD ["--help"]
