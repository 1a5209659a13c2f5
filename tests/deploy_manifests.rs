//! deploy/ machine-checked: each kustomize overlay is rendered with
//! `kubectl kustomize` and every manifest (rendered or example) is parsed
//! strictly (tests/manifests); then the places that must agree are compared:
//! CNI bin dirs (overlay mounts, install-cni's search, the Multus HelmCharts),
//! pool names (ConfigMap, NAD annotations, the demo's resource requests),
//! whereabouts's flat file, and the binaries the DaemonSet runs versus what
//! the Dockerfile puts in the image. Tier: reads files and runs kubectl only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test failure

mod manifests;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use manifests::crds::{
    DevicePluginConfig, Ipam, MultusValues, NetworkAttachmentDefinition, SriovNetConf,
};
use manifests::{flag, kustomize, kustomize_dir, parse_all, parse_dir, repo_path, Doc, HelmChart};
use sriov_rs::install_cni;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const OVERLAYS: [&str; 2] = ["k3s", "kubernetes"];
const K3S_CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";
const NAD_RESOURCE_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
const DEVICE_PLUGIN: &str = "sriov-device-plugin";

/// One rendered overlay: exactly these three objects.
struct Rendered {
    name: &'static str,
    service_account: ServiceAccount,
    config_map: ConfigMap,
    daemon_set: DaemonSet,
}

impl Rendered {
    fn pod(&self) -> &PodSpec {
        self.daemon_set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("DaemonSet has a pod spec")
    }

    fn container(&self, name: &str) -> &Container {
        all_containers(self.pod())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{}: no container {name}", self.name))
    }

    fn install_cni(&self) -> &Container {
        let pod = self.pod();
        let init = pod.init_containers.as_deref().unwrap_or_default();
        init.iter()
            .find(|c| command_line(c).get(1).map(String::as_str) == Some("install-cni"))
            .unwrap_or_else(|| panic!("{}: no init container runs install-cni", self.name))
    }
}

/// Each overlay rendered once for all tests; absent if kubectl is missing
/// outside CI (kustomize prints SKIPPED then).
fn render(overlay: &str) -> Option<&'static Rendered> {
    rendered().iter().find(|r| r.name == overlay)
}

fn rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| OVERLAYS.into_iter().filter_map(render_now).collect())
}

fn render_now(overlay: &'static str) -> Option<Rendered> {
    let text = kustomize(overlay)?;
    let (mut sa, mut cm, mut ds) = (None, None, None);
    for doc in parse_all(&text, &format!("overlay {overlay}")) {
        match doc {
            Doc::ServiceAccount(x) if sa.is_none() => sa = Some(*x),
            Doc::ConfigMap(x) if cm.is_none() => cm = Some(*x),
            Doc::DaemonSet(x) if ds.is_none() => ds = Some(*x),
            other => panic!("overlay {overlay}: unexpected or repeated {other:?}"),
        }
    }
    Some(Rendered {
        name: overlay,
        service_account: sa.expect("a ServiceAccount"),
        config_map: cm.expect("a ConfigMap"),
        daemon_set: ds.expect("a DaemonSet"),
    })
}

fn all_containers(pod: &PodSpec) -> impl Iterator<Item = &Container> {
    pod.init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
}

fn command_line(c: &Container) -> Vec<String> {
    let mut line = c.command.clone().unwrap_or_default();
    line.extend(c.args.clone().unwrap_or_default());
    line
}

fn args(c: &Container) -> &[String] {
    c.args.as_deref().unwrap_or_default()
}

/// The node path a container path lands on: through the longest mount that
/// covers it, which must be a hostPath volume. None if nothing covers it.
fn host_path_of(pod: &PodSpec, container: &Container, path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())?;
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)?;
    let host = volume.host_path.as_ref()?;
    let rest = path.strip_prefix(&mount.mount_path).ok()?;
    Some(Path::new(&host.path).join(rest))
}

fn host_root(install: &Container) -> String {
    flag(args(install), "--host-root")
        .unwrap_or(install_cni::DEFAULT_HOST_ROOT)
        .to_string()
}

/// A node path as the installer sees it under its host root.
fn in_container(root: &str, node_path: &str) -> String {
    format!("{}{node_path}", root.trim_end_matches('/'))
}

fn trim_slash(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// `<prefix>/<name>` for every pool of the rendered ConfigMap, the prefix
/// coming from the pool or from the device plugin's --resource-prefix.
fn advertised_resources(r: &Rendered) -> BTreeSet<String> {
    let plugin = r.container(DEVICE_PLUGIN);
    let prefix = flag(args(plugin), "--resource-prefix").unwrap_or("intel.com");
    let config = config_json(r);
    config
        .resource_list
        .iter()
        .map(|pool| {
            let prefix = pool.resource_prefix.as_deref().unwrap_or(prefix);
            format!("{prefix}/{}", pool.resource_name)
        })
        .collect()
}

fn config_json(r: &Rendered) -> DevicePluginConfig {
    let text = r
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("config.json"))
        .unwrap_or_else(|| panic!("{}: ConfigMap has no config.json", r.name));
    manifests::strict_json(text, &format!("{}: config.json", r.name))
}

fn example_helm_charts() -> Vec<(String, HelmChart, MultusValues)> {
    parse_dir("deploy/examples/multus")
        .into_iter()
        .flat_map(|(file, docs)| {
            docs.into_iter().map(move |doc| match doc {
                Doc::HelmChart(chart) => {
                    let values: MultusValues = *manifests::strict(
                        serde_yaml_ng::from_str(&chart.spec.values_content).unwrap(),
                        &format!("{file}: valuesContent"),
                    );
                    (file.clone(), *chart, values)
                }
                other => panic!("{file}: expected a HelmChart, got {other:?}"),
            })
        })
        .collect()
}

fn example_nads() -> Vec<(String, NetworkAttachmentDefinition, SriovNetConf)> {
    parse_dir("deploy/examples/networks")
        .into_iter()
        .flat_map(|(file, docs)| {
            docs.into_iter().map(move |doc| match doc {
                Doc::Nad(nad) => {
                    let conf: SriovNetConf =
                        manifests::strict_json(&nad.spec.config, &format!("{file}: spec.config"));
                    (file.clone(), *nad, conf)
                }
                other => panic!("{file}: expected a NetworkAttachmentDefinition, got {other:?}"),
            })
        })
        .collect()
}

fn demo_deployment() -> Deployment {
    let mut docs = parse_dir("deploy/examples/demo");
    assert_eq!(docs.len(), 1, "one demo file");
    let (file, mut docs) = docs.remove(0);
    match docs.pop() {
        Some(Doc::Deployment(d)) if docs.is_empty() => *d,
        other => panic!("{file}: expected one Deployment, got {other:?}"),
    }
}

#[test]
fn every_overlay_renders_to_a_service_account_config_map_and_daemon_set() {
    for r in rendered() {
        let meta = &r.daemon_set.metadata;
        assert_eq!(meta.name.as_deref(), Some(DEVICE_PLUGIN), "{}", r.name);
        assert_eq!(meta.namespace.as_deref(), Some("kube-system"), "{}", r.name);
        // Upstream's ConfigMap name, so an existing one carries over.
        assert_eq!(
            r.config_map.metadata.name.as_deref(),
            Some("sriovdp-config")
        );
        let pod = r.pod();
        assert_eq!(
            pod.service_account_name.as_deref(),
            r.service_account.metadata.name.as_deref()
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            r.service_account.automount_service_account_token,
            Some(false)
        );
        assert_eq!(
            pod.host_network,
            Some(true),
            "netlink needs the node's netns"
        );
    }
}

#[test]
fn every_container_is_least_privilege_with_resources() {
    for r in rendered() {
        for c in all_containers(r.pod()) {
            let who = format!("{}/{}", r.name, c.name);
            let sc = c.security_context.as_ref().expect(&who);
            assert_eq!(sc.privileged, Some(false), "{who}");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{who}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{who}");
            let caps = sc.capabilities.as_ref().expect(&who);
            assert_eq!(
                caps.drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{who}"
            );
            assert!(
                caps.add.as_ref().is_none_or(Vec::is_empty),
                "{who} adds capabilities"
            );
            let res = c.resources.as_ref().expect(&who);
            for (what, list) in [("requests", &res.requests), ("limits", &res.limits)] {
                let list = list.as_ref().unwrap_or_else(|| panic!("{who}: no {what}"));
                assert!(
                    list.contains_key("cpu") && list.contains_key("memory"),
                    "{who} {what}"
                );
            }
        }
        let plugin = r.container(DEVICE_PLUGIN);
        let res = plugin.resources.as_ref().unwrap();
        let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| m.as_ref().unwrap()[k].0.clone();
        assert_eq!(q(&res.requests, "cpu"), "10m");
        assert_eq!(q(&res.requests, "memory"), "16Mi");
        assert_eq!(q(&res.limits, "cpu"), "200m");
        assert_eq!(q(&res.limits, "memory"), "64Mi");
    }
}

#[test]
fn device_plugin_mounts_the_kubelet_devinfo_config_and_sysfs_paths() {
    for r in rendered() {
        let pod = r.pod();
        let plugin = r.container(DEVICE_PLUGIN);
        // The kubelet and Multus look for these at the same paths on the node.
        for path in [
            "/var/lib/kubelet/device-plugins",
            "/var/lib/kubelet/plugins_registry",
            "/var/lib/kubelet/pod-resources",
            "/var/run/k8s.cni.cncf.io/devinfo/dp",
        ] {
            assert_eq!(
                host_path_of(pod, plugin, path).as_deref(),
                Some(Path::new(path)),
                "{}: {path}",
                r.name
            );
        }
        // sysfs: read-only, and the flag points at the mount.
        let sysfs_root = flag(args(plugin), "--sysfs-root").expect("--sysfs-root");
        assert_eq!(
            host_path_of(pod, plugin, sysfs_root).as_deref(),
            Some(Path::new("/sys"))
        );
        let sys_mount = plugin
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == sysfs_root)
            .unwrap();
        assert_eq!(
            sys_mount.read_only,
            Some(true),
            "{}: sysfs is read-only",
            r.name
        );

        // --config-file is the ConfigMap's config.json.
        let config_file = flag(args(plugin), "--config-file").expect("--config-file");
        let (dir, file) = config_file.rsplit_once('/').unwrap();
        let mount = plugin
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {dir}", r.name));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        let cm = volume
            .config_map
            .as_ref()
            .expect("config volume is a ConfigMap");
        assert_eq!(
            cm.name.as_str(),
            r.config_map.metadata.name.as_deref().unwrap()
        );
        let items = cm.items.as_deref().unwrap_or_default();
        assert!(items
            .iter()
            .any(|i| i.path == file && i.key == "config.json"));
        assert!(!config_json(r).resource_list.is_empty());
    }
}

/// The node policy: `--node-policy` is the `node-policy.yaml` key of the
/// optional `sriov-node-policy` ConfigMap, read-only; since the ConfigMap is
/// optional, the daemon is told that a missing file means no policy. The
/// example ConfigMap is that ConfigMap, and its policy parses.
#[test]
fn node_policy_flag_is_the_optional_config_maps_key_and_the_example_parses() {
    for r in rendered() {
        let pod = r.pod();
        let plugin = r.container(DEVICE_PLUGIN);
        let policy = flag(args(plugin), "--node-policy").expect("--node-policy");
        let (dir, file) = policy.rsplit_once('/').unwrap();
        let mount = plugin
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {dir}", r.name));
        assert_eq!(mount.read_only, Some(true), "{}", r.name);
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        let cm = volume
            .config_map
            .as_ref()
            .expect("node-policy volume is a ConfigMap");
        assert_eq!(cm.optional, Some(true), "{}: optional", r.name);
        let items = cm.items.as_deref().unwrap_or_default();
        assert!(
            items.iter().any(|i| i.path == file && i.key == file),
            "{}: {items:?}",
            r.name
        );
        // optional volume -> the daemon treats a missing file as no policy
        assert!(
            args(plugin).iter().any(|a| a == "--node-policy-optional"),
            "{}",
            r.name
        );

        let mut docs = parse_dir("deploy/examples/node-policy");
        assert_eq!(docs.len(), 1, "one example file");
        let (example, docs) = docs.remove(0);
        let [Doc::ConfigMap(example_cm)] = &docs[..] else {
            panic!("{example}: expected one ConfigMap, got {docs:?}");
        };
        assert_eq!(example_cm.metadata.name.as_deref(), Some(cm.name.as_str()));
        assert_eq!(
            example_cm.metadata.namespace, r.daemon_set.metadata.namespace,
            "{example}: in the DaemonSet's namespace"
        );
        let text = example_cm
            .data
            .as_ref()
            .and_then(|d| d.get(file))
            .unwrap_or_else(|| panic!("{example}: no key {file}"));
        let policies = sriov_rs::provision::parse(text, sriov_rs::provision::Format::Yaml)
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(!policies.policies.is_empty());
    }
}

/// deploy/components/provisioning grants exactly what applying a policy
/// writes with: /sys read-write, NET_ADMIN for the PF MTU; everything else
/// stays dropped and unprivileged.
#[test]
fn the_provisioning_component_makes_sysfs_writable_and_adds_net_admin_only() {
    for overlay in OVERLAYS {
        let Some(text) = manifests::kustomize_with_component(overlay, "provisioning") else {
            continue;
        };
        let ds = parse_all(&text, &format!("{overlay} + provisioning"))
            .into_iter()
            .find_map(|doc| match doc {
                Doc::DaemonSet(ds) => Some(ds),
                _ => None,
            })
            .expect("a DaemonSet");
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let plugin = all_containers(pod)
            .find(|c| c.name == DEVICE_PLUGIN)
            .unwrap();
        let sysfs_root = flag(args(plugin), "--sysfs-root").expect("--sysfs-root");
        assert_eq!(
            host_path_of(pod, plugin, sysfs_root).as_deref(),
            Some(Path::new("/sys"))
        );
        let mount = plugin
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == sysfs_root)
            .unwrap();
        assert_eq!(mount.read_only, Some(false), "{overlay}: /sys writable");
        let security = plugin.security_context.as_ref().unwrap();
        let caps = security.capabilities.as_ref().unwrap();
        assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        // every other mount as in the overlay alone
        let plain = render(overlay).unwrap().container(DEVICE_PLUGIN);
        let others = |c: &Container| -> Vec<String> {
            c.volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.mount_path != sysfs_root)
                .map(|m| format!("{}:{}:{:?}", m.name, m.mount_path, m.read_only))
                .collect()
        };
        assert_eq!(others(plugin), others(plain), "{overlay}");
    }
}

/// `value` with each `$(NAME)` replaced as the kubelet does it: from the
/// container's env entries that carry a literal value. Panics on a
/// reference it cannot resolve (the kubelet would pass it on verbatim).
fn expand_env(container: &Container, value: &str) -> String {
    let mut out = value.to_owned();
    while let Some(start) = out.find("$(") {
        let end = start + out[start..].find(')').expect("a closing parenthesis");
        let name = &out[start + 2..end];
        let resolved = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{}: $({name}) has no literal value", container.name));
        out.replace_range(start..=end, &resolved);
    }
    out
}

/// The address the DaemonSet tells the daemon to serve probes and metrics on.
fn health_addr(r: &Rendered) -> std::net::SocketAddr {
    let plugin = r.container(DEVICE_PLUGIN);
    let flag = flag(args(plugin), "--health-addr").expect("--health-addr");
    expand_env(plugin, flag)
        .parse()
        .unwrap_or_else(|e| panic!("{}: --health-addr={flag}: {e}", r.name))
}

#[test]
fn probes_reach_the_health_endpoint_the_daemon_is_told_to_serve() {
    for r in rendered() {
        let plugin = r.container(DEVICE_PLUGIN);
        let addr = health_addr(r);
        // loopback only: the port is not exposed; hostNetwork lets the kubelet reach it
        assert!(addr.ip().is_loopback(), "{}: {addr}", r.name);
        assert_eq!(r.pod().host_network, Some(true), "{}", r.name);
        for (probe, path) in [
            (&plugin.liveness_probe, "/healthz"),
            (&plugin.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{}: {path} probe", r.name));
            assert_eq!(get.path.as_deref(), Some(path), "{}", r.name);
            assert_eq!(
                get.host.as_deref(),
                Some(addr.ip().to_string().as_str()),
                "{}",
                r.name
            );
            assert_eq!(
                get.port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(
                    addr.port()
                )),
                "{}",
                r.name
            );
        }
        // the daemon looks up /dev nodes where the node's /dev is mounted
        let dev_root = flag(args(plugin), "--dev-root").expect("--dev-root");
        let dev = host_path_of(
            r.pod(),
            plugin,
            &format!("{}/dev", dev_root.trim_end_matches('/')),
        );
        assert_eq!(dev.as_deref(), Some(Path::new("/dev")), "{}", r.name);
    }
}

#[test]
fn the_metrics_port_and_scrape_annotations_name_the_daemons_listener() {
    for r in rendered() {
        let plugin = r.container(DEVICE_PLUGIN);
        let addr = health_addr(r);
        // off the network by default: loopback (checked with the probes too)
        assert!(addr.ip().is_loopback(), "{}: {addr}", r.name);
        let ports = plugin.ports.as_deref().unwrap_or_default();
        let metrics = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .unwrap_or_else(|| panic!("{}: no port named metrics", r.name));
        assert_eq!(metrics.container_port, i32::from(addr.port()), "{}", r.name);
        assert_eq!(metrics.protocol.as_deref(), Some("TCP"), "{}", r.name);
        let annotations = r
            .daemon_set
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let annotation = |key: &str| {
            annotations
                .get(key)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{}: no {key} annotation", r.name))
        };
        assert_eq!(annotation("prometheus.io/scrape"), "true", "{}", r.name);
        assert_eq!(
            annotation("prometheus.io/port"),
            addr.port().to_string(),
            "{}",
            r.name
        );
        assert_eq!(annotation("prometheus.io/path"), "/metrics", "{}", r.name);
    }
}

/// docs/k3s.md's way to expose /metrics: the example overlay changes only
/// HEALTH_ADDR, and the daemon then listens on every address of the node,
/// on the port the annotations and the port name, still reached by the
/// loopback probes.
#[test]
fn the_metrics_example_exposes_the_same_port_on_the_node() {
    let Some(text) = kustomize_dir(&repo_path("deploy/examples/metrics")) else {
        return;
    };
    let daemon_set = parse_all(&text, "deploy/examples/metrics")
        .into_iter()
        .find_map(|doc| match doc {
            Doc::DaemonSet(ds) => Some(*ds),
            _ => None,
        })
        .expect("a DaemonSet");
    let template = daemon_set.spec.expect("spec").template;
    let pod = template.spec.expect("pod spec");
    let plugin = pod
        .containers
        .iter()
        .find(|c| c.name == DEVICE_PLUGIN)
        .expect("the device plugin container");
    let flag = flag(args(plugin), "--health-addr").expect("--health-addr");
    let addr: std::net::SocketAddr = expand_env(plugin, flag).parse().expect("an address");
    assert!(addr.ip().is_unspecified(), "{addr}");
    let annotations = template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some(addr.port().to_string().as_str())
    );
    let metrics_port = plugin
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .map(|p| p.container_port);
    assert_eq!(metrics_port, Some(i32::from(addr.port())));
    for probe in [&plugin.liveness_probe, &plugin.readiness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        assert_eq!(get.host.as_deref(), Some("127.0.0.1"), "0.0.0.0 covers it");
    }
}

#[test]
fn every_mount_names_a_volume_and_every_container_runs_one_image() {
    for r in rendered() {
        let pod = r.pod();
        let volumes: BTreeSet<&str> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        let images: BTreeSet<Option<&str>> =
            all_containers(pod).map(|c| c.image.as_deref()).collect();
        assert_eq!(images.len(), 1, "{}: images {images:?}", r.name);
        for c in all_containers(pod) {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    volumes.contains(m.name.as_str()),
                    "{}/{}: {}",
                    r.name,
                    c.name,
                    m.name
                );
            }
        }
    }
}

#[test]
fn k3s_overlay_installs_where_k3s_and_multus_look_and_follows_upgrades() {
    let Some(r) = render("k3s") else { return };
    let pod = r.pod();
    let install = r.install_cni();
    let root = host_root(install);

    // install-cni's first choice under the mount is K3s's fixed dir...
    let new_dir = in_container(&root, install_cni::K3S_BIN_DIR);
    assert_eq!(
        host_path_of(pod, install, &new_dir).as_deref(),
        Some(Path::new(install_cni::K3S_BIN_DIR))
    );
    // ...and older K3s's `current` link and the release dirs it points to
    // (absolute links to data/<hash>) are inside the same mount.
    let current = in_container(&root, install_cni::K3S_LEGACY_CURRENT);
    assert!(host_path_of(pod, install, &current).is_some());
    let release = in_container(&root, "/var/lib/rancher/k3s/data/0123abcd/bin");
    assert!(host_path_of(pod, install, &release).is_some());
    // /opt/cni/bin is not visible, so a K3s node never falls back to it.
    let generic = in_container(&root, install_cni::GENERIC_BIN_DIR);
    assert_eq!(host_path_of(pod, install, &generic), None);

    // Every Multus HelmChart installs plugins into that same dir.
    for (file, _, values) in example_helm_charts() {
        assert_eq!(
            trim_slash(&values.config.cni_conf.bin_dir),
            install_cni::K3S_BIN_DIR,
            "{file}"
        );
    }

    // The sidecar that reinstalls after older-K3s upgrades sees the same dirs.
    let watch = pod
        .containers
        .iter()
        .find(|c| args(c).iter().any(|a| a == "--watch"))
        .expect("k3s overlay runs install-cni --watch");
    assert_eq!(command_line(watch)[..2], command_line(install)[..2]);
    assert_eq!(host_root(watch), root);
    assert_eq!(
        host_path_of(pod, watch, &new_dir).as_deref(),
        Some(Path::new(install_cni::K3S_BIN_DIR))
    );
    assert!(host_path_of(pod, watch, &current).is_some());
}

#[test]
fn kubernetes_overlay_installs_into_opt_cni_bin_only() {
    let Some(r) = render("kubernetes") else {
        return;
    };
    let pod = r.pod();
    let install = r.install_cni();
    let root = host_root(install);
    let generic = in_container(&root, install_cni::GENERIC_BIN_DIR);
    assert_eq!(
        host_path_of(pod, install, &generic).as_deref(),
        Some(Path::new(install_cni::GENERIC_BIN_DIR))
    );
    for k3s in [install_cni::K3S_BIN_DIR, install_cni::K3S_LEGACY_CURRENT] {
        assert_eq!(host_path_of(pod, install, &in_container(&root, k3s)), None);
    }
    // /opt/cni/bin does not move on upgrades: no watch sidecar.
    assert!(pod
        .containers
        .iter()
        .all(|c| !args(c).iter().any(|a| a == "--watch")));
}

#[test]
fn nads_are_sriov_networks_drawing_from_a_pool_the_config_map_defines() {
    let nads = example_nads();
    assert_eq!(nads.len(), 3, "one NAD per IPAM choice");
    let mut ipams = BTreeSet::new();
    for (file, nad, conf) in &nads {
        assert_eq!(conf.plugin, "sriov", "{file}: type");
        assert_eq!(conf.cni_version, "1.0.0", "{file}");
        // All three are the same network with a different IPAM, so the demo
        // works with whichever is applied.
        assert_eq!(nad.metadata.name.as_deref(), Some("sriov-net"), "{file}");
        assert_eq!(conf.name, "sriov-net", "{file}");
        ipams.insert(match &conf.ipam {
            Ipam::HostLocal { ranges } => {
                assert!(!ranges.is_empty() && ranges.iter().all(|set| !set.is_empty()));
                "host-local"
            }
            Ipam::Whereabouts { .. } => "whereabouts",
            Ipam::Dhcp {} => "dhcp",
        });
        let resource = nad
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NAD_RESOURCE_ANNOTATION))
            .unwrap_or_else(|| panic!("{file}: no {NAD_RESOURCE_ANNOTATION}"));
        for r in rendered() {
            let pools = advertised_resources(r);
            assert!(
                pools.contains(resource),
                "{file}: {resource} not in {pools:?}"
            );
        }
    }
    assert_eq!(ipams, BTreeSet::from(["host-local", "whereabouts", "dhcp"]));
}

#[test]
fn whereabouts_nad_names_the_flat_file_the_k3s_chart_writes() {
    let charts = example_helm_charts();
    let (file, _, values) = charts
        .iter()
        .find(|(_, _, v)| v.whereabouts.is_some())
        .expect("a HelmChart with rke2-whereabouts");
    let wb = values.whereabouts.as_ref().unwrap();
    assert!(wb.enabled, "{file}");
    assert_eq!(trim_slash(&wb.cni_conf.conf_dir), K3S_CONF_DIR, "{file}");
    assert_eq!(
        trim_slash(&wb.cni_conf.bin_dir),
        install_cni::K3S_BIN_DIR,
        "{file}"
    );
    let flat_file = format!(
        "{}/whereabouts.d/whereabouts.conf",
        trim_slash(&wb.cni_conf.conf_dir)
    );

    let nads = example_nads();
    let (nad_file, _, conf) = nads
        .iter()
        .find(|(_, _, c)| matches!(c.ipam, Ipam::Whereabouts { .. }))
        .expect("a whereabouts NAD");
    let Ipam::Whereabouts {
        configuration_path, ..
    } = &conf.ipam
    else {
        unreachable!()
    };
    assert_eq!(configuration_path, &flat_file, "{nad_file}");
}

#[test]
fn helm_charts_are_the_three_k3s_multus_ipam_choices() {
    let charts = example_helm_charts();
    assert_eq!(charts.len(), 3);
    let mut kinds = BTreeSet::new();
    for (file, chart, values) in &charts {
        assert_eq!(chart.metadata.name.as_deref(), Some("multus"), "{file}");
        assert_eq!(
            chart.metadata.namespace.as_deref(),
            Some("kube-system"),
            "{file}"
        );
        assert_eq!(chart.spec.chart, "rke2-multus", "{file}");
        assert_eq!(chart.spec.repo, "https://rke2-charts.rancher.io", "{file}");
        assert_eq!(chart.spec.target_namespace, "kube-system", "{file}");
        assert_eq!(values.config.fullname_override, "multus", "{file}");
        let cni = &values.config.cni_conf;
        assert_eq!(trim_slash(&cni.conf_dir), K3S_CONF_DIR, "{file}");
        assert_eq!(
            trim_slash(&cni.multus_autoconfig_dir),
            K3S_CONF_DIR,
            "{file}"
        );
        assert_eq!(
            cni.kubeconfig,
            format!("{K3S_CONF_DIR}/multus.d/multus.kubeconfig"),
            "{file}"
        );
        let dhcp = values.manifests.as_ref().is_some_and(|m| m.dhcp_daemon_set);
        let whereabouts = values.whereabouts.as_ref().is_some_and(|w| w.enabled);
        let kind = match (dhcp, whereabouts) {
            (false, false) => "host-local",
            (false, true) => "whereabouts",
            (true, false) => "dhcp",
            (true, true) => panic!("{file}: one IPAM choice per chart"),
        };
        assert!(
            file.ends_with(&format!("helmchart-{kind}.yaml")),
            "{file} is {kind}"
        );
        kinds.insert(kind);
    }
    assert_eq!(kinds, BTreeSet::from(["host-local", "whereabouts", "dhcp"]));
}

#[test]
fn demo_requests_the_nads_pool_and_attaches_it_as_net1() {
    let demo = demo_deployment();
    let template = &demo.spec.as_ref().unwrap().template;
    let networks = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(NETWORKS_ANNOTATION))
        .expect("demo names its networks");
    assert_eq!(networks, "sriov-net@net1");

    let nads = example_nads();
    let namespace = demo.metadata.namespace.as_deref().unwrap_or("default");
    for (file, nad, _) in &nads {
        assert_eq!(nad.metadata.namespace.as_deref(), Some(namespace), "{file}");
        let resource = &nad.metadata.annotations.as_ref().unwrap()[NAD_RESOURCE_ANNOTATION];
        let pod = template.spec.as_ref().unwrap();
        let asked: Vec<_> = pod
            .containers
            .iter()
            .filter_map(|c| c.resources.as_ref())
            .collect();
        // Extended resources: requests must equal limits.
        assert!(asked.iter().any(|res| {
            let get = |m: &Option<BTreeMap<String, Quantity>>| {
                m.as_ref()
                    .and_then(|m| m.get(resource))
                    .map(|q| q.0.clone())
            };
            get(&res.limits) == Some("1".into()) && get(&res.requests) == Some("1".into())
        }));
    }
}

/// The image must hold what the DaemonSet runs, and `sriov` next to
/// `sriovctl` (install-cni's default source).
#[test]
fn daemon_set_commands_exist_in_the_dockerfile_image() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a multi-stage Dockerfile");
    let mut in_image = BTreeSet::new();
    for line in final_stage.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (dest, sources) = words.split_last().unwrap();
        for source in sources {
            let name = source.rsplit('/').next().unwrap();
            in_image.insert(if dest.ends_with('/') {
                format!("{dest}{name}")
            } else {
                dest.to_string()
            });
        }
    }
    for r in rendered() {
        for c in all_containers(r.pod()) {
            let program = &command_line(c)[0];
            assert!(
                in_image.contains(program),
                "{}/{}: {program} not in {in_image:?}",
                r.name,
                c.name
            );
            if program.ends_with("/sriovctl") {
                let sibling = Path::new(program).with_file_name(install_cni::PLUGIN_NAME);
                assert!(in_image.contains(sibling.to_str().unwrap()), "{in_image:?}");
            }
        }
    }
}

/// The checker itself: a misspelled field must fail, naming the field, in
/// k8s-openapi types (which would ignore it) and in the local CRD types.
#[test]
fn misspelled_fields_are_caught() {
    let cases = [
        (
            "readOnlyRootFileSystem",
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers:\n      - name: c\n        securityContext: {readOnlyRootFileSystem: true}\n",
        ),
        (
            "hostpath",
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers: [{name: c}]\n      volumes: [{name: v, hostpath: {path: /sys}}]\n",
        ),
        (
            "valueContent",
            "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata: {name: x}\nspec: {repo: r, chart: c, targetNamespace: n, valuesContent: v, valueContent: v}\n",
        ),
        (
            "annotation",
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: x, annotation: {}}\nspec: {config: '{}'}\n",
        ),
    ];
    for (typo, yaml) in cases {
        let err = manifests::try_parse_all(yaml, typo).expect_err(typo);
        assert!(err.contains(typo), "{typo}: {err}");
    }
    let values = "config:\n  fullnameOverride: multus\n  cni_conf: {confDir: a, binDir: b, binDIr: b, kubeconfig: c, multusAutoconfigDir: d}\n";
    let err =
        manifests::try_strict::<MultusValues>(serde_yaml_ng::from_str(values).unwrap(), "values")
            .expect_err("binDIr");
    assert!(err.contains("binDIr"), "{err}");
}
