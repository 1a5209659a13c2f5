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

    if links_with_rust_lld() {
        link_startup_code_together();
        pack_relative_relocations();
    }

    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;

    // We are both sides of every API: the device plugin serves DevicePlugin
    // and calls Registration, the kubelet stand-in and the tests do the reverse.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The functions the daemon runs from start to its first ListAndWatch list,
/// in `hack/sriov-device-plugin.order` (written by `hack/startup-order.sh`).
const STARTUP_ORDER: &str = "hack/sriov-device-plugin.order";

/// Whether the binaries are linked by rust-lld: x86_64-unknown-linux-gnu
/// since Rust 1.90, and no other linker configured. The ordering file is
/// lld's (GNU ld has no `--symbol-ordering-file`).
fn links_with_rust_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let custom_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| flags.contains("linker"));
    target == "x86_64-unknown-linux-gnu" && !custom_linker && rustc_links_with_lld()
}

/// Lay the daemon's start-up functions out together: the kernel maps a
/// binary's code around every page it touches, so start-up code spread over
/// the whole text makes nearly all of it resident (5 MiB of a 6.4 MiB text;
/// laid out together, 1.7 MiB: README, "Device plugin start-up, memory and
/// Allocate"). Names no longer in the binary (the code changed since the
/// file was written) are skipped without a warning: the layout only gets
/// less compact.
fn link_startup_code_together() {
    println!("cargo:rerun-if-changed={STARTUP_ORDER}");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join(STARTUP_ORDER);
    if order.is_file() {
        let bin = "cargo:rustc-link-arg-bin=sriov-device-plugin";
        println!("{bin}=-Wl,--symbol-ordering-file={}", order.display());
        println!("{bin}=-Wl,--no-warn-symbol-ordering");
    }
}

/// Store the binaries' relative relocations packed (`DT_RELR`): a
/// position-independent binary is fixed up at start at every pointer it
/// holds, about 19,400 in the daemon, and as 24-byte `RELA` entries that
/// table is 460 KiB the loader reads, so resident, for the process's whole
/// life; packed, under 10 KiB (README, "Under 8 MiB at 4096 VFs"). The
/// loader must know the format: glibc 2.36 and later (one that does not
/// refuses the binary, naming the missing `GLIBC_ABI_DT_RELR`), so only
/// when the building machine's glibc has it, and only for the daemon, whose
/// memory this is for: the CNI plugin is the binary most likely to be
/// copied onto another host (the image's binaries are static musl, built
/// without this). The glibc check runs when build.rs does, not at every
/// build: a target dir moved to an older machine keeps the decision.
fn pack_relative_relocations() {
    if glibc_knows_relr() {
        println!("cargo:rustc-link-arg-bin=sriov-device-plugin=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc is 2.36 or later (`getconf
/// GNU_LIBC_VERSION`: "glibc 2.36").
fn glibc_knows_relr() -> bool {
    let Ok(output) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .strip_prefix("glibc ")
        .is_some_and(|version| major_minor(version) >= (2, 36))
}

/// Whether this rustc links x86_64-unknown-linux-gnu with its own rust-lld
/// (1.90 and later).
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    major_minor(text.split_whitespace().nth(1).unwrap_or_default()) >= (1, 90)
}

/// The first two numbers of a dotted version ("1.95.0" → (1, 95)); 0 for
/// what is missing or not a number.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
