//! deploy/components/dra machine-checked, through overlays/k3s-dra (overlays/k3s
//! plus the component) and deploy/examples/dra: every document parsed
//! strictly (tests/manifests), then what must agree is compared: the RBAC
//! against what the driver calls, the mounted dirs against the daemon's
//! defaults (the component passes no DRA flag), the DeviceClass against the
//! driver name, the claim template against the pool the config moves to DRA
//! and the NAD the demo attaches. Tier: reads files, runs kubectl and the
//! daemon's `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test failure

mod manifests;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaimTemplate};
use manifests::{kustomize, parse_all, parse_dir, Doc};
use sriov_rs::config::{self, AllocationApi};
use std::collections::BTreeSet;
use std::process::Command;

const DEVICE_PLUGIN: &str = "sriov-device-plugin";
const NAD_RESOURCE_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

struct Rendered {
    service_account: ServiceAccount,
    config_map: ConfigMap,
    daemon_set: DaemonSet,
    role: ClusterRole,
    binding: ClusterRoleBinding,
    device_class: DeviceClass,
}

/// overlays/k3s-dra, rendered; None when kubectl is missing outside CI.
fn render() -> Option<Rendered> {
    let text = kustomize("k3s-dra")?;
    let (mut sa, mut cm, mut ds, mut role, mut binding, mut class) =
        (None, None, None, None, None, None);
    for doc in parse_all(&text, "overlay k3s-dra") {
        match doc {
            Doc::ServiceAccount(x) if sa.is_none() => sa = Some(*x),
            Doc::ConfigMap(x) if cm.is_none() => cm = Some(*x),
            Doc::DaemonSet(x) if ds.is_none() => ds = Some(*x),
            Doc::ClusterRole(x) if role.is_none() => role = Some(*x),
            Doc::ClusterRoleBinding(x) if binding.is_none() => binding = Some(*x),
            Doc::DeviceClass(x) if class.is_none() => class = Some(*x),
            other => panic!("overlay k3s-dra: unexpected or repeated {other:?}"),
        }
    }
    Some(Rendered {
        service_account: sa.expect("a ServiceAccount"),
        config_map: cm.expect("a ConfigMap"),
        daemon_set: ds.expect("a DaemonSet"),
        role: role.expect("a ClusterRole"),
        binding: binding.expect("a ClusterRoleBinding"),
        device_class: class.expect("a DeviceClass"),
    })
}

impl Rendered {
    fn pod(&self) -> &PodSpec {
        self.daemon_set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("DaemonSet has a pod spec")
    }

    fn plugin(&self) -> &Container {
        self.pod()
            .containers
            .iter()
            .find(|c| c.name == DEVICE_PLUGIN)
            .expect("the device plugin container")
    }

    /// The node path mounted at `path` in the device plugin container.
    fn host_path_at(&self, path: &str) -> Option<String> {
        let mount = self
            .plugin()
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)?;
        let volume = self
            .pod()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)?;
        Some(volume.host_path.as_ref()?.path.clone())
    }

    fn config(&self) -> config::Config {
        let text = self
            .config_map
            .data
            .as_ref()
            .and_then(|d| d.get("config.json"))
            .expect("config.json in the ConfigMap");
        let prefix = manifests::flag(
            self.plugin().args.as_deref().unwrap_or_default(),
            "--resource-prefix",
        )
        .expect("--resource-prefix");
        config::parse(text, prefix)
            .expect("the DRA config loads")
            .config
    }
}

/// The daemon's `--help`: its flags and their defaults.
fn daemon_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"))
        .arg("--help")
        .output()
        .expect("run sriov-device-plugin --help");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// The default `--help` shows for `flag` (clap's `[default: ...]`).
fn default_of(help: &str, flag: &str) -> Option<String> {
    let at = help.find(&format!("{flag} "))?;
    let rest = &help[at..];
    let next_flag = rest[flag.len()..]
        .find("\n  -")
        .map_or(rest.len(), |i| i + flag.len());
    let text = &rest[..next_flag];
    let start = text.find("[default: ")? + "[default: ".len();
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_owned())
}

#[test]
fn rbac_grants_exactly_what_the_driver_calls() {
    let Some(r) = render() else { return };
    let mut granted = BTreeSet::new();
    for rule in &r.role.rules.clone().unwrap_or_default() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "resource.k8s.io/resourceclaims:get",
        "resource.k8s.io/resourceslices:create",
        "resource.k8s.io/resourceslices:update",
        "resource.k8s.io/resourceslices:delete",
        "resource.k8s.io/resourceslices:list",
        "resource.k8s.io/resourceslices:watch",
        "/nodes:get",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(granted, expected);
    // bound to the daemon's own service account, which now mounts its token
    assert_eq!(
        r.binding.role_ref.name,
        r.role.metadata.name.clone().unwrap()
    );
    let subjects = r.binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(
        Some(subjects[0].name.as_str()),
        r.pod().service_account_name.as_deref()
    );
    assert_eq!(
        subjects[0].namespace, r.daemon_set.metadata.namespace,
        "the binding names the daemon's namespace"
    );
    assert_eq!(r.pod().automount_service_account_token, Some(true));
    assert_eq!(
        r.service_account.automount_service_account_token,
        Some(true)
    );
}

#[test]
fn dra_dirs_are_mounted_where_the_daemon_defaults_point() {
    let Some(r) = render() else { return };
    let help = daemon_help();
    let args = r.plugin().args.clone().unwrap_or_default();
    for flag in ["--dra-plugin-path", "--cdi-spec-dir"] {
        let value = manifests::flag(&args, flag)
            .map(str::to_owned)
            .or_else(|| default_of(&help, flag))
            .unwrap_or_else(|| panic!("{flag}: neither passed nor defaulted in --help"));
        let dir = value.trim_end_matches('/');
        assert_eq!(
            r.host_path_at(dir).as_deref(),
            Some(dir),
            "{flag} {dir}: the node's dir is mounted at the same path"
        );
    }
    // every flag the DaemonSet passes is one the daemon knows
    for arg in &args {
        let name = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
            "{name} is not a flag of sriov-device-plugin"
        );
    }
}

#[test]
fn device_class_selects_the_daemons_driver() {
    let Some(r) = render() else { return };
    let help = daemon_help();
    let args = r.plugin().args.clone().unwrap_or_default();
    let driver = manifests::flag(&args, "--dra-driver-name")
        .map(str::to_owned)
        .or_else(|| default_of(&help, "--dra-driver-name"))
        .expect("--dra-driver-name passed or defaulted");
    let selectors = r.device_class.spec.selectors.clone().unwrap_or_default();
    let expressions: Vec<String> = selectors
        .iter()
        .filter_map(|s| s.cel.as_ref().map(|c| c.expression.clone()))
        .collect();
    assert_eq!(
        expressions,
        vec![format!("device.driver == {driver:?}")],
        "the DeviceClass names the driver the daemon registers"
    );
}

#[test]
fn the_config_moves_one_pool_to_dra_and_the_claim_template_asks_for_it() {
    let Some(r) = render() else { return };
    let config = r.config();
    let dra: Vec<String> = config
        .resources
        .iter()
        .filter(|p| p.allocation_api == AllocationApi::Dra)
        .map(|p| p.full_name())
        .collect();
    assert_eq!(dra, vec!["intel.com/intel_sriov_netdevice".to_owned()]);
    assert!(
        config
            .resources
            .iter()
            .any(|p| p.allocation_api == AllocationApi::DevicePlugin),
        "one pool stays on the device plugin: both APIs side by side"
    );

    let mut template = None;
    let mut deployment = None;
    for (file, docs) in parse_dir("deploy/examples/dra") {
        for doc in docs {
            match doc {
                Doc::ResourceClaimTemplate(x) => template = Some(*x),
                Doc::Deployment(x) => deployment = Some(*x),
                other => panic!("{file}: unexpected {other:?}"),
            }
        }
    }
    let template: ResourceClaimTemplate = template.expect("a ResourceClaimTemplate");
    let deployment: Deployment = deployment.expect("a Deployment");
    let requests = template
        .spec
        .spec
        .devices
        .as_ref()
        .and_then(|d| d.requests.clone())
        .unwrap_or_default();
    assert_eq!(requests.len(), 1);
    let exactly = requests[0].exactly.as_ref().expect("an exact request");
    assert_eq!(
        Some(exactly.device_class_name.as_str()),
        r.device_class.metadata.name.as_deref()
    );
    let cel: Vec<String> = exactly
        .selectors
        .iter()
        .flatten()
        .filter_map(|s| s.cel.as_ref().map(|c| c.expression.clone()))
        .collect();
    assert_eq!(
        cel,
        vec![format!(
            "device.attributes[\"k8s.cni.cncf.io\"].resourceName == {:?}",
            dra[0]
        )]
    );

    // the demo pod uses that template, and attaches a NAD drawing from that pool
    let pod_template = &deployment.spec.as_ref().unwrap().template;
    let pod = pod_template.spec.as_ref().unwrap();
    let claims = pod.resource_claims.clone().unwrap_or_default();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0].resource_claim_template_name.as_deref(),
        template.metadata.name.as_deref()
    );
    let used: Vec<String> = pod.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.claims.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(used, vec![claims[0].name.clone()]);
    let networks = pod_template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("k8s.v1.cni.cncf.io/networks"))
        .expect("a Multus networks annotation");
    let nad_name = networks.split('@').next().unwrap();
    let mut nads = 0;
    for (file, docs) in parse_dir("deploy/examples/networks") {
        for doc in docs {
            let Doc::Nad(nad) = doc else { continue };
            if nad.metadata.name.as_deref() != Some(nad_name) {
                continue;
            }
            nads += 1;
            let annotations = nad.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations.get(NAD_RESOURCE_ANNOTATION),
                Some(&dra[0]),
                "{file}: the NAD names the DRA pool, as Multus's DRA support matches it"
            );
        }
    }
    assert!(nads > 0, "no example NAD is named {nad_name}");
}
