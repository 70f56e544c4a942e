# vxland and vxlanctl in a small runtime image.
#   docker build -t vxland .
#   docker run --rm --privileged --network host -v /dev/hugepages:/dev/hugepages -v /run/vxland:/run/vxland \
#     -v "$PWD/vxland.yaml:/etc/vxland/vxland.yaml:ro" vxland -l 0,1 -a 0000:3b:00.0 -a 0000:3b:00.1 \
#     -- --config /etc/vxland/vxland.yaml
# Build stage: Swift toolchain on Debian bookworm plus DPDK's headers.
FROM swift:6.1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libdpdk-dev libnuma-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY Tests Tests
# The Swift runtime and Foundation are linked in, so the runtime image needs no toolchain.
RUN swift build -c release --static-swift-stdlib --product vxland \
 && swift build -c release --static-swift-stdlib --product vxlanctl \
 && install -D -m 0755 .build/release/vxland /out/vxland \
 && install -D -m 0755 .build/release/vxlanctl /out/vxlanctl

# Runtime stage: DPDK's libraries and poll-mode drivers (the `dpdk` package, with dpdk-devbind.py), libnuma.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dpdk libnuma1 iproute2 pciutils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/vxland /out/vxlanctl /usr/local/bin/
RUN mkdir -p /run/vxland /etc/vxland
ENTRYPOINT ["/usr/local/bin/vxland"]
CMD ["--help"]
