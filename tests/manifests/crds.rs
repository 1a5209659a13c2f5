//! The custom resources in deploy/examples, which k8s-openapi has no types
//! for: just the fields we use, with unknown fields denied. The Helm values
//! of the Multus chart are typed too, since Helm ignores a misspelled value
//! without a word.
// Some fields are parsed only so that their shape (and spelling) is checked.
#![allow(dead_code)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

pub const HELM_CHART_API_VERSION: &str = "helm.cattle.io/v1";
pub const NAD_API_VERSION: &str = "k8s.cni.cncf.io/v1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmChart {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: HelmChartSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmChartSpec {
    pub repo: String,
    pub chart: String,
    #[serde(default)]
    pub version: Option<String>,
    pub target_namespace: String,
    pub values_content: String,
}

/// The rke2-multus values we set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultusValues {
    pub config: MultusConfig,
    #[serde(rename = "rke2-whereabouts", default)]
    pub whereabouts: Option<WhereaboutsValues>,
    #[serde(default)]
    pub manifests: Option<MultusManifests>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultusConfig {
    #[serde(rename = "fullnameOverride")]
    pub fullname_override: String,
    pub cni_conf: MultusCniConf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MultusCniConf {
    pub conf_dir: String,
    pub bin_dir: String,
    pub kubeconfig: String,
    pub multus_autoconfig_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhereaboutsValues {
    pub enabled: bool,
    pub fullname_override: String,
    pub cni_conf: WhereaboutsCniConf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhereaboutsCniConf {
    pub conf_dir: String,
    pub bin_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MultusManifests {
    pub dhcp_daemon_set: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkAttachmentDefinition {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NadSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NadSpec {
    /// The CNI config, JSON in a string.
    pub config: String,
}

/// The `sriov` CNI config keys our example NADs use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SriovNetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin: String,
    pub ipam: Ipam,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Ipam {
    #[serde(rename = "host-local")]
    HostLocal { ranges: Vec<Vec<HostLocalRange>> },
    #[serde(rename = "whereabouts")]
    Whereabouts {
        range: String,
        #[serde(default)]
        range_start: Option<String>,
        #[serde(default)]
        range_end: Option<String>,
        configuration_path: String,
    },
    #[serde(rename = "dhcp")]
    Dhcp {},
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostLocalRange {
    pub subnet: String,
    #[serde(default)]
    pub range_start: Option<String>,
    #[serde(default)]
    pub range_end: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// The device plugin's config.json (upstream format), keys our example uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DevicePluginConfig {
    pub resource_list: Vec<ResourcePool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcePool {
    pub resource_name: String,
    #[serde(default)]
    pub resource_prefix: Option<String>,
    pub selectors: Selectors,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selectors {
    #[serde(default)]
    pub vendors: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub drivers: Vec<String>,
    #[serde(default)]
    pub pf_names: Vec<String>,
}
