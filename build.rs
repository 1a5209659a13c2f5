//! Compiles the kubelet gRPC APIs in `proto/` into Rust.
//!
//! `protox` parses the .proto files in pure Rust, so no `protoc` binary is
//! needed on the build machine; `tonic-prost-build` then turns the descriptor
//! set into prost messages plus tonic clients and servers (`OUT_DIR/<package>.rs`).

use std::error::Error;

/// Root of the proto tree; import paths and package files are relative to it.
const PROTO_ROOT: &str = "proto";

/// One file per kubelet API. Each has its own proto package, so each becomes
/// its own generated file: `v1beta1.rs`, `pluginregistration.rs`, `v1.rs`,
/// `k8s.io.kubelet.pkg.apis.dra.v1.rs` (and `...dra.v1beta1.rs`), `v1alpha1.rs`.
const PROTO_FILES: &[&str] = &[
    "deviceplugin/v1beta1/api.proto",
    "pluginregistration/v1/api.proto",
    "podresources/v1/api.proto",
    "dra/v1/api.proto",
    "dra/v1beta1/api.proto",
    "dra-health/v1alpha1/api.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    // Cargo scans a directory given here recursively, so any edited, added or
    // removed .proto file triggers a rebuild.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;

    // We are both sides of every API: the device plugin serves DevicePlugin
    // and calls Registration, the kubelet stand-in and the tests do the reverse.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
