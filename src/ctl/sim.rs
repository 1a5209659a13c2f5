//! `sriovctl sim create|destroy|layout`.

use super::CtlError;
use crate::devtools::sim::{self, CreateOptions, Destroyed, Layout, Serve};
use crate::netlink::format_mac;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CarrierState {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Build the fake sysfs tree and the veth wiring (needs root unless --tree-only)
    Create {
        /// Layout file (TOML, or JSON by extension); default: the built-in E810 node
        #[arg(long, value_name = "FILE")]
        layout: Option<PathBuf>,
        /// Instance name: prefixes the wire namespaces (<name>-wire-<pf>)
        #[arg(long, default_value = sim::DEFAULT_INSTANCE)]
        name: String,
        /// Write only the sysfs tree, create no namespaces or links
        #[arg(long)]
        tree_only: bool,
    },
    /// Remove every namespace, link and file the node made (safe to repeat)
    Destroy,
    /// Pull (off) or plug (on) the cable of a simulated PF: its wire side goes
    /// down or up, so the PF netdev loses or regains carrier as a real one does
    Carrier {
        /// The PF's netdev name as the layout gives it (e.g. ens1f0)
        pf: String,
        #[arg(value_enum)]
        state: CarrierState,
    },
    /// Serve the live tree of the node at the root (started by create)
    #[command(hide = true)]
    Serve,
    /// Print the built-in layout, a starting point for your own
    Layout,
}

fn sim_root(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(sim::DEFAULT_ROOT))
}

pub fn run(command: SimCommand, sysfs_root: Option<&Path>) -> Result<(), CtlError> {
    let root = sim_root(sysfs_root);
    match command {
        SimCommand::Layout => {
            print!("{}", sim::layout::DEFAULT_LAYOUT_TOML);
            Ok(())
        }
        SimCommand::Create {
            layout,
            name,
            tree_only,
        } => {
            let layout = match layout {
                Some(path) => Layout::load(&path).map_err(sim::SimError::from)?,
                None => Layout::default_layout().map_err(sim::SimError::from)?,
            };
            let server = std::env::current_exe().map_err(|source| sim::SimError::Io {
                path: PathBuf::from("/proc/self/exe"),
                step: "find sriovctl to serve the node",
                source,
            })?;
            let serve = if tree_only {
                Serve::TreeOnly
            } else {
                Serve::Live { server: &server }
            };
            let node = sim::create(&CreateOptions {
                root: &root,
                instance: &name,
                layout: &layout,
                serve,
            })?;
            print_summary(&node, &root);
            if !tree_only {
                println!(
                    "device nodes (the daemon's --dev-root): {}",
                    sim::dev_root_for(&root).display()
                );
            }
            Ok(())
        }
        SimCommand::Serve => Ok(sim::live::serve(&root)?),
        SimCommand::Carrier { pf, state } => {
            sim::set_carrier(&root, &pf, matches!(state, CarrierState::On))?;
            println!(
                "{pf}: cable {}",
                if matches!(state, CarrierState::On) {
                    "plugged in"
                } else {
                    "pulled"
                }
            );
            Ok(())
        }
        SimCommand::Destroy => {
            match sim::destroy(&root)? {
                Destroyed::Node { instance } => {
                    println!("destroyed simulated node {instance} at {}", root.display())
                }
                Destroyed::Nothing => {
                    println!("no simulated node at {}: nothing to do", root.display())
                }
            }
            Ok(())
        }
    }
}

fn print_summary(node: &sim::SimNode, root: &Path) {
    println!("simulated node {} at {}", node.instance, root.display());
    for pf in &node.pfs {
        let name = pf.netdev.as_ref().map_or("-", |n| n.name.as_str());
        println!(
            "  PF {} {name} {}:{} driver {} numa {} vfs {}/{} wire netns {}",
            pf.address,
            pf.spec.vendor,
            pf.spec.device,
            pf.spec.driver,
            pf.spec.numa_node,
            pf.spec.num_vfs,
            pf.spec.total_vfs,
            pf.wire_netns
        );
        for vf in &pf.vfs {
            match &vf.netdev {
                Some(netdev) => println!(
                    "    VF {} {} driver {} netdev {} mac {}",
                    vf.index,
                    vf.address,
                    vf.driver.as_deref().unwrap_or("-"),
                    netdev.name,
                    format_mac(&netdev.mac)
                ),
                None => println!(
                    "    VF {} {} driver {} (no netdev)",
                    vf.index,
                    vf.address,
                    vf.driver.as_deref().unwrap_or("-")
                ),
            }
        }
    }
    println!("use it with: export SRIOV_SYSFS_ROOT={}", root.display());
}
