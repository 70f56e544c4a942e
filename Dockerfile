# vxland and vxlanctl in a small runtime image.
#   docker build -t vxland .
#   docker run --rm --privileged --network host -v /dev/hugepages:/dev/hugepages -v /run/vxland:/run/vxland \
#     -v "$PWD/vxland.yaml:/etc/vxland/vxland.yaml:ro" vxland -l 0,1 -a 0000:3b:00.0 -a 0000:3b:00.1 \
#     -- --config /etc/vxland/vxland.yaml
# Build stage: the Swift toolchain the project is developed with, on Debian bookworm, plus DPDK's headers.
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libdpdk-dev libnuma-dev pkg-config binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift Package.resolved ./
COPY Sources Sources
COPY Tests Tests
COPY scripts/runtime-packages.sh scripts/
# The Swift runtime and Foundation are linked in, so the runtime image needs no toolchain. The Debian packages
# that provide every library the binaries still need (and the poll-mode drivers) are listed for the next stage.
RUN swift build -c release --static-swift-stdlib --product vxland \
 && swift build -c release --static-swift-stdlib --product vxlanctl \
 && install -D -m 0755 .build/release/vxland /out/vxland \
 && install -D -m 0755 .build/release/vxlanctl /out/vxlanctl \
 && scripts/runtime-packages.sh /out/vxland /out/vxlanctl > /out/runtime-packages.txt

# Runtime stage: exactly the packages listed above, and the tools an operator uses with a DPDK NIC.
FROM debian:bookworm-slim
COPY --from=build /out/runtime-packages.txt /tmp/
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      dpdk iproute2 pciutils \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /out/vxland /out/vxlanctl /usr/local/bin/
RUN mkdir -p /run/vxland /etc/vxland
ENTRYPOINT ["/usr/local/bin/vxland"]
CMD ["--help"]
