//! `sriovctl apiserver-sim`: the stand-in API server
//! (`dra::standin::HttpStandin`) as a process, for the demo and end-to-end
//! tests. Plain HTTP on a loopback address; writes a kubeconfig pointing at
//! itself, prints `ready <url>`, then serves until `quit`, SIGINT or
//! SIGTERM (the end of stdin does not stop it), running commands read from
//! stdin, one per line:
//!
//! ```text
//! down | up                  close the port (clients get "connection refused") / listen again
//! versions v1,v1beta1        offer these resource.k8s.io versions from now on
//! node NAME UID              add a Node object
//! claim FILE                 store a ResourceClaim (resource.k8s.io/v1, JSON or YAML), allocation included
//! delete-claim NS/NAME
//! slices [NODE]              one line per ResourceSlice
//! devices [NODE]             one line per published device: pool, name, and the
//!                            k8s.cni.cncf.io attributes Multus reads (deviceID, resourceName)
//! wipe NODE                  delete the node's slices, as a starting kubelet does
//! quit
//! ```

use super::CtlError;
use crate::dra::kube_api::ResourceApiVersion;
use crate::dra::slices::CNI_DOMAIN;
use crate::dra::standin::{ApiServerStandin, HttpStandin};
use clap::Args;
use k8s_openapi::api::resource::v1::{Device, ResourceClaim};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ApiserverSimArgs {
    /// Address to listen on: loopback only (no TLS, no authentication);
    /// port 0 picks a free one
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Write a kubeconfig pointing at the server here (mode 0600)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// resource.k8s.io versions to offer: v1,v1beta1 as Kubernetes 1.34+,
    /// v1beta1 alone as 1.32 and 1.33
    #[arg(long, value_delimiter = ',', default_value = "v1,v1beta1", value_parser = parse_version)]
    pub versions: Vec<ResourceApiVersion>,
    /// A Node object, NAME=UID (repeat for more)
    #[arg(long = "node", value_name = "NAME=UID", value_parser = parse_node)]
    pub nodes: Vec<(String, String)>,
}

fn parse_version(text: &str) -> Result<ResourceApiVersion, String> {
    ResourceApiVersion::parse(text)
        .ok_or_else(|| format!("{text:?} is not a resource.k8s.io version we serve (v1, v1beta1)"))
}

fn parse_node(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, uid)) if !name.is_empty() && !uid.is_empty() => {
            Ok((name.to_owned(), uid.to_owned()))
        }
        _ => Err(format!("{text:?} is not NAME=UID")),
    }
}

fn usage(text: impl Into<String>) -> CtlError {
    CtlError::Usage(text.into())
}

/// A claim file: JSON or YAML, `resource.k8s.io/v1`.
fn read_claim(path: &Path) -> Result<ResourceClaim, CtlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("claim: reading {}: {e}", path.display())))?;
    let claim: ResourceClaim = serde_yaml_ng::from_str(&text).map_err(|e| {
        usage(format!(
            "claim: {} is not a v1 ResourceClaim: {e}",
            path.display()
        ))
    })?;
    if claim.metadata.name.is_none() || claim.metadata.namespace.is_none() {
        return Err(usage(format!(
            "claim: {} needs metadata.name and metadata.namespace",
            path.display()
        )));
    }
    Ok(claim)
}

fn print_slices(api: &ApiServerStandin, node: Option<&str>) {
    for slice in api.list_slices(node, None) {
        println!(
            "slice {} node={} driver={} pool={} generation={} count={} devices={}",
            slice.metadata.name.as_deref().unwrap_or_default(),
            slice.spec.node_name.as_deref().unwrap_or("-"),
            slice.spec.driver,
            slice.spec.pool.name,
            slice.spec.pool.generation,
            slice.spec.pool.resource_slice_count,
            slice.spec.devices.as_ref().map_or(0, Vec::len)
        );
    }
}

/// A device's string attribute, `-` when it has none.
fn string_attribute<'d>(device: &'d Device, name: &str) -> &'d str {
    device
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.get(name))
        .and_then(|value| value.string.as_deref())
        .unwrap_or("-")
}

fn print_devices(api: &ApiServerStandin, node: Option<&str>) {
    for slice in api.list_slices(node, None) {
        for device in slice.spec.devices.iter().flatten() {
            println!(
                "device {} {} deviceID={} resourceName={}",
                slice.spec.pool.name,
                device.name,
                string_attribute(device, &format!("{CNI_DOMAIN}/deviceID")),
                string_attribute(device, &format!("{CNI_DOMAIN}/resourceName"))
            );
        }
    }
}

/// One stdin command; false: quit.
async fn command(server: &mut HttpStandin, line: &str) -> Result<bool, CtlError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => {}
        [first, ..] if first.starts_with('#') => {}
        ["down"] => {
            server.take_down().await;
            println!("down");
        }
        ["up"] => {
            server.bring_up().await.map_err(|e| usage(e.to_string()))?;
            println!("up {}", server.url());
        }
        ["versions", list] => {
            let versions: Result<Vec<_>, _> = list.split(',').map(parse_version).collect();
            let versions = versions.map_err(usage)?;
            server.set_versions(&versions);
            let names: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
            println!("versions {}", names.join(","));
        }
        ["node", name, uid] => {
            server.api().put_node(name, uid);
            println!("node {name} {uid}");
        }
        ["claim", file] => {
            let claim = read_claim(Path::new(file))?;
            let (namespace, name) = (
                claim.metadata.namespace.clone().unwrap_or_default(),
                claim.metadata.name.clone().unwrap_or_default(),
            );
            let uid = claim.metadata.uid.clone().unwrap_or_default();
            server.api().put_claim(claim);
            println!("claim {namespace}/{name} uid={uid}");
        }
        ["delete-claim", reference] => {
            let (namespace, name) = reference
                .split_once('/')
                .ok_or_else(|| usage(format!("delete-claim: {reference:?} is not NS/NAME")))?;
            let deleted = server.api().delete_claim(namespace, name);
            println!(
                "delete-claim {reference} {}",
                if deleted { "deleted" } else { "not found" }
            );
        }
        ["slices"] => print_slices(server.api(), None),
        ["slices", node] => print_slices(server.api(), Some(node)),
        ["devices"] => print_devices(server.api(), None),
        ["devices", node] => print_devices(server.api(), Some(node)),
        ["wipe", node] => {
            let deleted = server.api().delete_node_slices(node);
            println!("wipe {node} {deleted}");
        }
        ["quit"] => return Ok(false),
        _ => return Err(usage(format!("unknown command: {line}"))),
    }
    Ok(true)
}

pub fn run(args: ApiserverSimArgs) -> Result<(), CtlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        let api = ApiServerStandin::new();
        for (name, uid) in &args.nodes {
            api.put_node(name, uid);
        }
        let mut server = HttpStandin::start(api, args.listen, &args.versions)
            .await
            .map_err(|e| usage(e.to_string()))?;
        if let Some(path) = &args.kubeconfig_out {
            server
                .write_kubeconfig(path)
                .map_err(|e| usage(e.to_string()))?;
        }
        println!("ready {}", server.url());
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| usage(format!("listening for SIGTERM: {e}")))?;
        // stdin is read on a blocking thread, one line at a time
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        let mut stdin_open = true;
        loop {
            tokio::select! {
                line = rx.recv(), if stdin_open => match line {
                    Some(line) => match command(&mut server, line.trim()).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        // a bad command is reported; the server goes on
                        Err(error) => println!("error: {error}"),
                    },
                    None => stdin_open = false,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        server.take_down().await;
        Ok(())
    })
}
