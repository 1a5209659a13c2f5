//! What Prepare writes for a claim: one CDI spec per claim, with one CDI
//! device per allocated device, and the device-info file the CNI reads.
//!
//! The content is the device plugin's: env vars and device nodes come from
//! `deviceplugin::allocate::allocate_container` for the same devices, the
//! device-info file from the served device through `deviceplugin::files`,
//! so a DPDK pod works the same whichever API handed it its VF.

use super::checkpoint::PreparedDevice;
use super::inventory::DraDevice;
use crate::deviceplugin::allocate::{allocate_container, AllocateError, CdiMode};
use crate::deviceplugin::files::{
    device_info_path, remove_if_present, write_atomically, FileError, CDI_VERSION, DEVICE_INFO_MODE,
};
use crate::deviceplugin::served::PoolOwners;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prefix of our claims' CDI spec files (the device plugin's are
/// `sriov-dp-*` and it removes all of those at start; these are not its).
pub const CDI_SPEC_PREFIX: &str = "sriov-dra-";
/// CDI class of our devices: the kind is `<driver>/vf`.
pub const CDI_CLASS: &str = "vf";

/// `<driver>/vf`
pub fn cdi_kind(driver: &str) -> String {
    format!("{driver}/{CDI_CLASS}")
}

/// The CDI device name: `<claim uid>-<device name>`, unique on the node.
pub fn cdi_device_name(claim_uid: &str, device: &str) -> String {
    format!("{claim_uid}-{device}")
}

/// `<driver>/vf=<claim uid>-<device name>`, as the kubelet passes it on.
pub fn cdi_device_id(driver: &str, claim_uid: &str, device: &str) -> String {
    format!(
        "{}={}",
        cdi_kind(driver),
        cdi_device_name(claim_uid, device)
    )
}

/// `<dir>/sriov-dra-<claim uid>.json`
pub fn spec_path(dir: &Path, claim_uid: &str) -> PathBuf {
    dir.join(format!("{CDI_SPEC_PREFIX}{claim_uid}.json"))
}

/// Why a claim's files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Allocate(#[from] AllocateError),
}

/// The CDI spec of one claim. `devices` pairs each prepared device with
/// where it is served. Env vars are computed per request and pool over all
/// of that request's devices, as Allocate does per container: a container
/// that uses the request sees `PCIDEVICE_<PREFIX>_<NAME>` list them all.
pub fn claim_spec(
    driver: &str,
    claim_uid: &str,
    devices: &[(&PreparedDevice, &DraDevice)],
) -> Result<serde_json::Value, CdiError> {
    let none = PoolOwners::default();
    let mut groups: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (prepared, dra) in devices {
        groups
            .entry((prepared.request.as_str(), dra.pool.resource_name.as_str()))
            .or_default()
            .push(dra.id.clone());
    }
    let mut entries = Vec::new();
    for (prepared, dra) in devices {
        let group = &groups[&(prepared.request.as_str(), dra.pool.resource_name.as_str())];
        let env_source = allocate_container(&dra.pool, group, CdiMode::Off, &none)?;
        let env: Vec<String> = env_source
            .envs
            .iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let own = allocate_container(
            &dra.pool,
            std::slice::from_ref(&dra.id),
            CdiMode::Off,
            &none,
        )?;
        let nodes: Vec<serde_json::Value> = own
            .devices
            .iter()
            .map(|d| json!({"path": d.container_path, "hostPath": d.host_path, "permissions": d.permissions}))
            .collect();
        let mut edits = json!({"env": env});
        if !nodes.is_empty() {
            edits["deviceNodes"] = json!(nodes);
        }
        entries.push(json!({
            "name": cdi_device_name(claim_uid, &prepared.device),
            "containerEdits": edits,
        }));
    }
    Ok(json!({"cdiVersion": CDI_VERSION, "kind": cdi_kind(driver), "devices": entries}))
}

/// Write a claim's CDI spec and its devices' device-info files.
pub fn write_claim_files(
    cdi_dir: &Path,
    devinfo_dir: &Path,
    driver: &str,
    claim_uid: &str,
    devices: &[(&PreparedDevice, &DraDevice)],
) -> Result<(), CdiError> {
    let spec = claim_spec(driver, claim_uid, devices)?;
    for (_, dra) in devices {
        if let Some(info) = dra.served().and_then(|d| d.device_info.as_ref()) {
            let path = device_info_path(devinfo_dir, &dra.pool.resource_name, &dra.id);
            write_atomically(&path, info.file_content().as_bytes(), DEVICE_INFO_MODE)?;
        }
    }
    write_atomically(
        &spec_path(cdi_dir, claim_uid),
        spec.to_string().as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Remove `sriov-dra-*` specs of claims not in `known` (a crash between
/// writing a claim's files and recording it leaves one). Returns the UIDs
/// whose specs went, and every failure.
pub fn remove_orphan_specs(
    cdi_dir: &Path,
    known: &dyn Fn(&str) -> bool,
) -> (Vec<String>, Vec<FileError>) {
    let entries = match std::fs::read_dir(cdi_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(source) => {
            let error = FileError {
                action: "list",
                path: cdi_dir.to_owned(),
                source,
            };
            return (Vec::new(), vec![error]);
        }
    };
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(uid) = name
            .strip_prefix(CDI_SPEC_PREFIX)
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        if known(uid) {
            continue;
        }
        match remove_if_present(&entry.path()) {
            Ok(()) => removed.push(uid.to_owned()),
            Err(error) => errors.push(error),
        }
    }
    (removed, errors)
}

/// Remove what [`write_claim_files`] wrote, keeping going and returning
/// every failure.
pub fn remove_claim_files(
    cdi_dir: &Path,
    devinfo_dir: &Path,
    claim_uid: &str,
    devices: &[PreparedDevice],
) -> Vec<FileError> {
    let mut errors: Vec<FileError> = devices
        .iter()
        .filter_map(|d| {
            remove_if_present(&device_info_path(devinfo_dir, &d.resource_name, &d.id)).err()
        })
        .collect();
    errors.extend(remove_if_present(&spec_path(cdi_dir, claim_uid)).err());
    errors
}
