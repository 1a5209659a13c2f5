//! `sriovctl kubelet-sim`: the stand-in kubelet on the command line. It
//! serves `kubelet.sock` in `--dir` (or watches a plugins_registry dir),
//! and runs commands read from stdin, one per line, printing results on
//! stdout:
//!
//! ```text
//! wait <resource> [N]             until the resource lists at least N healthy devices (default 1)
//! list                            every resource: registrations, updates, devices
//! prefer <resource> <size> [IDs]  GetPreferredAllocation over the unallocated healthy devices
//! allocate <resource> <IDs>       Allocate (IDs comma-separated, or preferred:N), as pod default/sim-<n>
//! restart                         a kubelet restart: stop, wipe the sockets, start again
//! sleep <seconds>
//! quit
//! ```

use super::CtlError;
use crate::devtools::kubelet_sim::{KubeletSim, PluginView};
use clap::Args;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct KubeletSimArgs {
    /// Directory to serve kubelet.sock in (the kubelet's device-plugins dir)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Act as the plugin watcher on DIR (a plugins_registry dir) instead
    #[arg(long)]
    pub plugin_watcher: bool,
    /// Also serve the PodResources API on this socket, reporting what
    /// `allocate` handed out (as pod default/sim-N)
    #[arg(long, value_name = "SOCKET")]
    pub pod_resources_socket: Option<PathBuf>,
    /// How long `wait` and `restart` wait, in seconds
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

fn usage(text: impl Into<String>) -> CtlError {
    CtlError::Usage(text.into())
}

fn print_view(resource: &str, view: &PluginView) {
    println!(
        "{resource}: registered {}x, {} list(s), stream {}, endpoint {}",
        view.registrations,
        view.updates,
        if view.stream_open { "open" } else { "closed" },
        view.endpoint.display()
    );
    for device in view.devices.iter().flatten() {
        let numa: Vec<String> = device
            .topology
            .iter()
            .flat_map(|t| t.nodes.iter().map(|n| n.id.to_string()))
            .collect();
        let numa = if numa.is_empty() {
            "-".to_owned()
        } else {
            numa.join(",")
        };
        println!("  {} {} numa={numa}", device.id, device.health);
    }
}

struct Session {
    sim: KubeletSim,
    args: KubeletSimArgs,
    /// Devices handed out so far, as the kubelet tracks them.
    allocated: BTreeSet<String>,
}

impl Session {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.timeout)
    }

    fn free(&self, resource: &str) -> Vec<String> {
        self.sim
            .plugin(resource)
            .map(|v| v.healthy_ids())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !self.allocated.contains(id))
            .collect()
    }

    async fn preferred(
        &self,
        resource: &str,
        size: i32,
        must: &[String],
    ) -> Result<Vec<String>, CtlError> {
        let free = self.free(resource);
        self.sim
            .preferred(resource, &free, must, size)
            .await
            .map_err(|e| usage(e.to_string()))
    }

    async fn run(&mut self, line: &str) -> Result<bool, CtlError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["wait", resource, rest @ ..] => {
                let count: usize = match rest.first() {
                    Some(n) => n
                        .parse()
                        .map_err(|_| usage(format!("wait: bad count {n}")))?,
                    None => 1,
                };
                let devices = self
                    .sim
                    .wait_for_devices(resource, self.timeout(), |d| {
                        d.iter()
                            .filter(|d| d.health == crate::kubelet_api::HEALTHY)
                            .count()
                            >= count
                    })
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                println!("{resource}: {} device(s) listed", devices.len());
            }
            ["list"] => {
                for (resource, view) in self.sim.plugins() {
                    print_view(&resource, &view);
                }
            }
            ["prefer", resource, size, rest @ ..] => {
                let size: i32 = size
                    .parse()
                    .map_err(|_| usage(format!("prefer: bad size {size}")))?;
                let must: Vec<String> = rest
                    .iter()
                    .flat_map(|s| s.split(','))
                    .map(String::from)
                    .collect();
                let ids = self.preferred(resource, size, &must).await?;
                println!("{resource}: preferred {}", ids.join(","));
            }
            ["allocate", resource, ids] => {
                let ids: Vec<String> = match ids.strip_prefix("preferred:") {
                    Some(n) => {
                        let size = n
                            .parse()
                            .map_err(|_| usage(format!("allocate: bad size {n}")))?;
                        self.preferred(resource, size, &[]).await?
                    }
                    None => ids.split(',').map(String::from).collect(),
                };
                // each allocation is one pod, as PodResources reports it
                let pod = format!("sim-{}", self.sim.assignments().len());
                let response = self
                    .sim
                    .allocate_to_pod("default", &pod, "main", resource, &ids)
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                self.allocated.extend(ids.iter().cloned());
                println!("{resource}: allocated {}", ids.join(","));
                for container in response.container_responses {
                    let mut envs: Vec<_> = container.envs.into_iter().collect();
                    envs.sort();
                    for (key, value) in envs {
                        println!("  env {key}={value}");
                    }
                    for spec in container.devices {
                        println!(
                            "  device {} -> {} ({})",
                            spec.host_path, spec.container_path, spec.permissions
                        );
                    }
                    for (key, value) in container.annotations {
                        println!("  annotation {key}={value}");
                    }
                    for cdi in container.cdi_devices {
                        println!("  cdi {}", cdi.name);
                    }
                }
            }
            ["restart"] => {
                let known: Vec<String> = self.sim.plugins().into_keys().collect();
                self.sim.stop();
                if !self.args.plugin_watcher {
                    KubeletSim::wipe_sockets(&self.args.dir)
                        .map_err(|e| usage(format!("wiping {}: {e}", self.args.dir.display())))?;
                }
                let began = Instant::now();
                self.sim = start(&self.args).await?;
                self.sim
                    .wait_until("every plugin to register again", self.timeout(), |p| {
                        known
                            .iter()
                            .all(|r| p.get(r).is_some_and(|v| v.devices.is_some()))
                    })
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                self.allocated.clear();
                println!(
                    "kubelet restarted: {} plugin(s) registered again in {:?}",
                    known.len(),
                    began.elapsed()
                );
            }
            ["sleep", secs] => {
                let secs: f64 = secs
                    .parse()
                    .map_err(|_| usage(format!("sleep: bad duration {secs}")))?;
                tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            }
            ["quit"] => return Ok(false),
            _ => return Err(usage(format!("unknown command: {line}"))),
        }
        Ok(true)
    }
}

async fn start(args: &KubeletSimArgs) -> Result<KubeletSim, CtlError> {
    let started = if args.plugin_watcher {
        KubeletSim::start_plugin_watcher(&args.dir).await
    } else {
        KubeletSim::start(&args.dir).await
    };
    let mut sim = started.map_err(|e| usage(e.to_string()))?;
    if let Some(socket) = &args.pod_resources_socket {
        sim.serve_pod_resources(socket)
            .await
            .map_err(|e| usage(e.to_string()))?;
    }
    Ok(sim)
}

pub fn run(args: KubeletSimArgs) -> Result<(), CtlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.dir)
            .map_err(|e| usage(format!("creating {}: {e}", args.dir.display())))?;
        let sim = start(&args).await?;
        eprintln!(
            "kubelet-sim: serving in {}; commands on stdin",
            args.dir.display()
        );
        let mut session = Session {
            sim,
            args,
            allocated: BTreeSet::new(),
        };
        // stdin is read on a blocking thread, one line at a time
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = rx.recv().await {
            if !session.run(line.trim()).await? {
                break;
            }
        }
        Ok(())
    })
}
