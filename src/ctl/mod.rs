//! `sriovctl`, the operator's CLI: argument parsing and dispatch. Each
//! subcommand lives in its own module and returns a `CtlError`.

#[cfg(feature = "devtools")]
pub mod apiserver_sim;
pub mod inventory;
#[cfg(feature = "devtools")]
pub mod kubelet_sim;
pub mod provision;
#[cfg(feature = "devtools")]
pub mod sim;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sriovctl",
    version,
    about = "Operate sriov-rs: simulated node, inventory, installation"
)]
pub struct Cli {
    /// sysfs tree to read (default /sys; the simulator defaults to /run/sriov-sim/sys)
    #[arg(long, global = true, env = crate::sysfs::ENV_SYSFS_ROOT, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace); RUST_LOG overrides it
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, destroy or describe the simulated SR-IOV node
    #[cfg(feature = "devtools")]
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Show PFs, VFs and the resource pools a config gives on this node
    Inventory(inventory::InventoryArgs),
    /// Install the sriov CNI binary into the node's CNI bin dir (K3s-aware)
    InstallCni(crate::install_cni::InstallCniArgs),
    /// A stand-in kubelet: registers device plugins, follows ListAndWatch,
    /// calls Allocate / GetPreferredAllocation on commands from stdin
    #[cfg(feature = "devtools")]
    KubeletSim(kubelet_sim::KubeletSimArgs),
    /// A stand-in Kubernetes API server for DRA (ResourceSlices,
    /// ResourceClaims, Nodes) over plain HTTP on loopback; commands on stdin
    #[cfg(feature = "devtools")]
    ApiserverSim(apiserver_sim::ApiserverSimArgs),
    /// Bring the node's PFs and VFs to a node policy (numVfs, drivers, PF
    /// MTU); prints the plan, applies it unless --dry-run
    Provision(provision::ProvisionArgs),
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[cfg(feature = "devtools")]
    #[error(transparent)]
    Sim(#[from] crate::devtools::sim::SimError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    InstallCni(#[from] crate::install_cni::InstallCniError),
    /// Provisioning ran but left something refused, failed or skipped.
    #[error("{0}")]
    Provision(String),
}

pub fn run(cli: Cli) -> Result<(), CtlError> {
    match cli.command {
        #[cfg(feature = "devtools")]
        Command::Sim(command) => sim::run(command, cli.sysfs_root.as_deref()),
        Command::Inventory(args) => inventory::run(&args, cli.sysfs_root.as_deref()),
        #[cfg(feature = "devtools")]
        Command::KubeletSim(args) => kubelet_sim::run(args),
        #[cfg(feature = "devtools")]
        Command::ApiserverSim(args) => apiserver_sim::run(args),
        Command::Provision(args) => provision::run(&args, cli.sysfs_root.as_deref()),
        Command::InstallCni(args) => {
            let report = crate::install_cni::run(&args)?;
            println!("{report}");
            Ok(())
        }
    }
}
