# syntax=docker/dockerfile:1

# The sriov-rs image: sriov-device-plugin, the `sriov` CNI plugin and sriovctl
# as static (musl) binaries on distroless/static, which has no shell and no
# libc, only CA certificates, /etc/passwd and /tmp.
#
#   docker build -t sriov-rs:0.1.0 .
#
# The build stage runs on the platform being built for (with buildx and
# --platform linux/arm64 that means emulation), so no cross linker is needed.
# deploy/ expects the three binaries side by side in /usr/bin: install-cni
# copies the `sriov` found next to sriovctl.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# musl-tools: a musl C compiler, for the day a dependency builds C code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "$(uname -m)" in \
      x86_64) echo x86_64-unknown-linux-musl ;; \
      aarch64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture: $(uname -m)" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
# BuildKit caches keep the crate registry and the target dir between builds;
# the binaries are copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --target "$target" --bins \
 && mkdir -p /out \
 && for bin in sriov sriov-device-plugin sriovctl; do \
      cp "target/$target/release/$bin" /out/; \
    done
# Fail the build, not the first pod, if the plugin cannot answer a runtime.
RUN echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION /out/sriov

FROM gcr.io/distroless/static-debian12
LABEL org.opencontainers.image.title="sriov-rs" \
      org.opencontainers.image.description="SR-IOV device plugin and CNI plugin for Kubernetes and K3s" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/sriov /out/sriov-device-plugin /out/sriovctl /usr/bin/
# The default user is root: the DaemonSet runs as uid 0 (to own files in the
# root-owned host dirs it writes) with every capability dropped.
ENTRYPOINT ["/usr/bin/sriov-device-plugin"]
