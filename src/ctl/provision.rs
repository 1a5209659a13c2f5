//! `sriovctl provision`: plan a node policy against this node, print the
//! plan, and apply it unless `--dry-run`. Exits non-zero when anything was
//! refused or failed.

use super::CtlError;
use crate::netlink::Netlink;
use crate::pci::PciAddress;
use crate::provision::{self, ApplyOptions, HeldVfs};
use crate::sysfs::SysfsRoot;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Node policy file (YAML or JSON; docs/provision.md)
    #[arg(long, value_name = "FILE")]
    pub node_policy: PathBuf,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Seconds to wait for new VFs and their drivers after sriov_numvfs
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub vf_timeout: u64,
    /// A VF a pod holds (repeatable). VFs on a kernel driver whose netdev
    /// is not in this network namespace count as held too.
    #[arg(long = "held-vf", value_name = "BDF")]
    pub held_vfs: Vec<PciAddress>,
}

pub fn run(args: &ProvisionArgs, sysfs_root: Option<&Path>) -> Result<(), CtlError> {
    let sysfs = SysfsRoot::resolve(sysfs_root);
    let policies =
        provision::load(&args.node_policy).map_err(|e| CtlError::Usage(e.to_string()))?;
    let node = provision::observe(&sysfs)
        .map_err(|e| CtlError::Usage(format!("reading the node: {e}")))?;
    let mut held = HeldVfs::from_addresses(&args.held_vfs);
    for vf in node.vfs_with_netdev_elsewhere() {
        held.insert(vf, Some("netdev outside this network namespace".into()));
    }
    let plan =
        provision::plan(&policies, &node, &held).map_err(|e| CtlError::Usage(e.to_string()))?;
    let report = if args.dry_run {
        None
    } else {
        let mut netlink = Netlink::open().map_err(|e| CtlError::Usage(e.to_string()))?;
        let options = ApplyOptions {
            vf_timeout: Duration::from_secs(args.vf_timeout),
            ..ApplyOptions::default()
        };
        Some(provision::apply(&plan, &sysfs, &mut netlink, &options))
    };
    let text = match args.output {
        Output::Table => match &report {
            Some(report) => format!("{plan}\n{report}"),
            None => plan.to_string(),
        },
        Output::Json => {
            let json = serde_json::json!({
                "dryRun": args.dry_run,
                "plan": plan,
                "report": report,
            });
            let mut text = serde_json::to_string_pretty(&json)
                .map_err(|e| CtlError::Usage(format!("rendering the plan: {e}")))?;
            text.push('\n');
            text
        }
    };
    write_stdout(&text)?;
    let (failed, refused, skipped) = match &report {
        Some(r) => (r.failed(), r.refused(), r.skipped()),
        None => (0, plan.refused(), 0),
    };
    if failed + refused + skipped > 0 {
        return Err(CtlError::Provision(if args.dry_run {
            format!("the plan refuses {refused} step(s)")
        } else {
            format!(
                "node policy not fully applied: {failed} failed, {skipped} skipped, {refused} refused"
            )
        }));
    }
    Ok(())
}

/// The whole text at once; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<(), CtlError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CtlError::Usage(format!("writing the plan: {e}")))
        }
        _ => Ok(()),
    }
}
