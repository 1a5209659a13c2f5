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
//! dra                             every DRA driver: registrations, the service chosen, endpoint
//! wait-dra <driver>               until the DRA driver is registered
//! prepare [DRIVER] NS/NAME/UID..  NodePrepareResources (DRIVER may be left out when one is registered)
//! unprepare [DRIVER] NS/NAME/UID..  NodeUnprepareResources
//! sleep <seconds>
//! echo <text>                     prints the text: a marker that everything before it was answered
//! quit
//! ```
//!
//! DRA answers, one line each, in the order of the claims:
//!
//! ```text
//! prepare <uid> device <pool> <device> requests=<names> cdi=<ids>
//! prepare <uid> no devices
//! prepare <uid> error: <message>
//! unprepare <uid> ok
//! unprepare <uid> error: <message>
//! ```
//!
//! With `--kubeconfig` and `--node-name`, every start (the first and each
//! `restart`) deletes the node's ResourceSlices through that API server, as
//! the kubelet does, and prints `wiped <node> <count>` (or
//! `wiped <node> error: <message>`).

use super::CtlError;
use crate::devtools::kubelet_dra::{
    DraClaimAnswer, DraPluginView, DraService, DraSettings, NodeSlices, NodeSlicesApi,
};
use crate::devtools::kubelet_sim::{KubeletSim, PluginView};
use crate::dra::claims::ClaimRef;
use crate::dra::kube_api::KubeDraApi;
use clap::Args;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Also watch this plugins_registry dir (DRA drivers, plugin-watcher
    /// device plugins) while serving kubelet.sock in --dir
    #[arg(long, value_name = "DIR", conflicts_with = "plugin_watcher")]
    pub plugins_registry: Option<PathBuf>,
    /// The DRAPlugin services this kubelet speaks, most preferred first:
    /// v1,v1beta1 as 1.34+, v1beta1 as 1.32 and 1.33
    #[arg(long, value_delimiter = ',', default_value = "v1,v1beta1", value_parser = parse_service)]
    pub dra_services: Vec<DraService>,
    /// An API server (e.g. `sriovctl apiserver-sim --kubeconfig-out`) where
    /// every start deletes the node's ResourceSlices, as the kubelet does
    #[arg(long, value_name = "FILE", requires = "node_name")]
    pub kubeconfig: Option<PathBuf>,
    /// The node this kubelet runs as
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

fn parse_service(text: &str) -> Result<DraService, String> {
    DraService::parse(text)
        .ok_or_else(|| format!("{text:?} is not a DRAPlugin version (v1, v1beta1)"))
}

fn parse_claim(text: &str) -> Result<ClaimRef, CtlError> {
    match text.split('/').collect::<Vec<_>>().as_slice() {
        [namespace, name, uid] if !namespace.is_empty() && !name.is_empty() && !uid.is_empty() => {
            Ok(ClaimRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid: uid.to_string(),
            })
        }
        _ => Err(usage(format!("{text:?} is not NAMESPACE/NAME/UID"))),
    }
}

fn print_dra(driver: &str, view: &DraPluginView) {
    println!(
        "{driver}: registered {}x, refused {}x, service {}, endpoint {}{}",
        view.registrations,
        view.rejections,
        view.service.map_or("-", |s| s.name()),
        view.endpoint.display(),
        view.last_rejection
            .as_deref()
            .map(|e| format!(", last refusal: {e}"))
            .unwrap_or_default()
    );
}

fn print_answers(verb: &str, answers: &[DraClaimAnswer]) {
    for answer in answers {
        let uid = &answer.uid;
        if let Some(error) = &answer.error {
            println!("{verb} {uid} error: {error}");
        } else if verb == "unprepare" {
            println!("{verb} {uid} ok");
        } else if answer.devices.is_empty() {
            println!("{verb} {uid} no devices");
        }
        for device in answer.devices.iter().filter(|_| answer.error.is_none()) {
            println!(
                "{verb} {uid} device {} {} requests={} cdi={}",
                device.pool_name,
                device.device_name,
                device.request_names.join(","),
                device.cdi_device_ids.join(",")
            );
        }
    }
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
    /// Where each start deletes the node's slices.
    node_slices: Option<NodeSlicesApi>,
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

    /// The driver named first in `words`, or the only one registered.
    fn driver_and_claims<'w>(
        &self,
        words: &'w [&'w str],
    ) -> Result<(String, &'w [&'w str]), CtlError> {
        match words {
            [first, rest @ ..] if !first.contains('/') => Ok((first.to_string(), rest)),
            _ => {
                let registered: Vec<String> = self
                    .sim
                    .dra_plugins()
                    .into_iter()
                    .filter(|(_, v)| v.service.is_some())
                    .map(|(driver, _)| driver)
                    .collect();
                match registered.as_slice() {
                    [only] => Ok((only.clone(), words)),
                    _ => Err(usage(format!(
                        "name the DRA driver: registered are {registered:?}"
                    ))),
                }
            }
        }
    }

    async fn dra_call(&self, verb: &str, words: &[&str]) -> Result<(), CtlError> {
        let (driver, claims) = self.driver_and_claims(words)?;
        let claims: Vec<ClaimRef> = claims
            .iter()
            .map(|c| parse_claim(c))
            .collect::<Result<_, _>>()?;
        if claims.is_empty() {
            return Err(usage(format!(
                "{verb}: no claim given (NAMESPACE/NAME/UID)"
            )));
        }
        let answers = if verb == "prepare" {
            self.sim.prepare(&driver, &claims).await
        } else {
            self.sim.unprepare(&driver, &claims).await
        };
        print_answers(
            verb,
            &answers.map_err(|e| usage(format!("{verb} on {driver}: {e}")))?,
        );
        Ok(())
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
                let known_dra: Vec<String> = self
                    .sim
                    .dra_plugins()
                    .into_iter()
                    .filter(|(_, v)| v.service.is_some())
                    .map(|(driver, _)| driver)
                    .collect();
                self.sim.stop();
                if !self.args.plugin_watcher {
                    KubeletSim::wipe_sockets(&self.args.dir)
                        .map_err(|e| usage(format!("wiping {}: {e}", self.args.dir.display())))?;
                }
                let began = Instant::now();
                self.sim = start(&self.args, self.node_slices.clone()).await?;
                self.sim
                    .wait_until("every plugin to register again", self.timeout(), |p| {
                        known
                            .iter()
                            .all(|r| p.get(r).is_some_and(|v| v.devices.is_some()))
                    })
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                self.sim
                    .wait_for_dra("every DRA driver to register again", self.timeout(), |p| {
                        known_dra
                            .iter()
                            .all(|d| p.get(d).is_some_and(|v| v.service.is_some()))
                    })
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                self.allocated.clear();
                println!(
                    "kubelet restarted: {} plugin(s) registered again in {:?}",
                    known.len() + known_dra.len(),
                    began.elapsed()
                );
            }
            ["dra"] => {
                for (driver, view) in self.sim.dra_plugins() {
                    print_dra(&driver, &view);
                }
            }
            ["wait-dra", driver] => {
                let plugins = self
                    .sim
                    .wait_for_dra(&format!("DRA driver {driver}"), self.timeout(), |p| {
                        p.get(*driver).is_some_and(|v| v.service.is_some())
                    })
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                if let Some(view) = plugins.get(*driver) {
                    print_dra(driver, view);
                }
            }
            ["prepare", rest @ ..] => self.dra_call("prepare", rest).await?,
            ["unprepare", rest @ ..] => self.dra_call("unprepare", rest).await?,
            ["sleep", secs] => {
                let secs: f64 = secs
                    .parse()
                    .map_err(|_| usage(format!("sleep: bad duration {secs}")))?;
                tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            }
            ["echo", text @ ..] => println!("{}", text.join(" ")),
            ["quit"] => return Ok(false),
            _ => return Err(usage(format!("unknown command: {line}"))),
        }
        Ok(true)
    }
}

async fn start(
    args: &KubeletSimArgs,
    node_slices: Option<NodeSlicesApi>,
) -> Result<KubeletSim, CtlError> {
    let dra = DraSettings {
        services: args.dra_services.clone(),
        node_slices,
    };
    let started = if args.plugin_watcher {
        KubeletSim::start_plugin_watcher_with(&args.dir, dra).await
    } else {
        match KubeletSim::start(&args.dir).await {
            Ok(mut sim) => match &args.plugins_registry {
                Some(registry) => sim
                    .watch_plugins_registry(registry, dra)
                    .await
                    .map(|()| sim),
                None => Ok(sim),
            },
            Err(error) => Err(error),
        }
    };
    let mut sim = started.map_err(|e| usage(e.to_string()))?;
    if let (Some(node), Some(wiped)) = (&args.node_name, sim.wiped()) {
        match wiped {
            Ok(count) => println!("wiped {node} {count}"),
            Err(error) => println!("wiped {node} error: {error}"),
        }
    }
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
        if args.kubeconfig.is_some() && !args.plugin_watcher && args.plugins_registry.is_none() {
            return Err(usage(
                "--kubeconfig: the node's ResourceSlices are deleted by the DRA side, which needs \
                 --plugin-watcher or --plugins-registry",
            ));
        }
        let node_slices = match (&args.kubeconfig, &args.node_name) {
            (Some(kubeconfig), Some(node)) => {
                let api = KubeDraApi::connect(Some(kubeconfig))
                    .await
                    .map_err(|e| usage(e.to_string()))?;
                let api: Arc<dyn NodeSlices> = Arc::new(api);
                Some(NodeSlicesApi {
                    node: node.clone(),
                    api,
                })
            }
            _ => None,
        };
        if let Some(registry) = &args.plugins_registry {
            std::fs::create_dir_all(registry)
                .map_err(|e| usage(format!("creating {}: {e}", registry.display())))?;
        }
        let sim = start(&args, node_slices.clone()).await?;
        eprintln!(
            "kubelet-sim: serving in {}; commands on stdin",
            args.dir.display()
        );
        let mut session = Session {
            sim,
            args,
            node_slices,
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
