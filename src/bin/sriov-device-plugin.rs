//! The device plugin daemon. This build resolves its settings and exits:
//! discovery (issue 3) and the kubelet server (issue 4) are not in yet.

use clap::Parser;
use sriov_rs::sysfs::SysfsRoot;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sriov-device-plugin",
    version,
    about = "SR-IOV device plugin for the kubelet"
)]
struct Args {
    /// Resource pool config, sriov-network-device-plugin format
    #[arg(long, default_value = "/etc/pcidp/config.json")]
    config_file: PathBuf,
    /// Default prefix of resource names
    #[arg(long, default_value = "intel.com")]
    resource_prefix: String,
    /// sysfs tree to read (also SRIOV_SYSFS_ROOT)
    #[arg(long, env = sriov_rs::sysfs::ENV_SYSFS_ROOT)]
    sysfs_root: Option<PathBuf>,
    /// Log filter; RUST_LOG overrides it
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() {
    let args = Args::parse();
    sriov_rs::logging::init(&args.log_level);
    let sysfs = SysfsRoot::resolve(args.sysfs_root.as_deref());
    tracing::info!(
        sysfs_root = %sysfs.path().display(),
        config_file = %args.config_file.display(),
        resource_prefix = %args.resource_prefix,
        "sriov-device-plugin starting"
    );
    tracing::error!("device discovery and the kubelet server are not implemented in this build");
    std::process::exit(2);
}
