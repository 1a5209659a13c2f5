//! The CNI device-info file (device-info spec 1.1.0) the runtime asks for
//! through `runtimeConfig.CNIDeviceInfoFile`: written on ADD, removed on DEL.
//!
//! Multus usually copies the device plugin's file there before ADD: we keep
//! its keys (`rdma-device`, `representor-device`, ...) and fill in ours.
//! The spec's library writes these files with mode 0444 and refuses to
//! overwrite one, so we replace it with a rename, never in place: a reader
//! sees the old file or the new one, never half of either.

use super::config::NetConf;
use super::error::{CniError, CODE_IO};
use super::vf_target::VfTarget;
use serde_json::{json, Map, Value};
use std::path::Path;

pub const SPEC_VERSION: &str = "1.1.0";

/// The path the runtime asked for, if any.
pub fn requested_path(conf: &NetConf) -> Option<&Path> {
    conf.runtime_config
        .as_ref()
        .and_then(|r| r.device_info_file.as_deref())
        .filter(|p| !p.is_empty())
        .map(Path::new)
}

/// The file's content for `target`, merged into what is there already.
pub fn content(existing: Option<Map<String, Value>>, target: &VfTarget) -> Map<String, Value> {
    let mut info = existing.unwrap_or_default();
    info.insert("type".into(), json!("pci"));
    info.insert("version".into(), json!(SPEC_VERSION));
    let pci = info.entry("pci").or_insert_with(|| json!({}));
    if !pci.is_object() {
        *pci = json!({});
    }
    if let Some(pci) = pci.as_object_mut() {
        pci.insert("pci-address".into(), json!(target.address.to_string()));
        pci.insert(
            "pf-pci-address".into(),
            json!(target.pf_address.to_string()),
        );
    }
    info
}

fn read_object(path: &Path) -> Option<Map<String, Value>> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => {
            tracing::warn!(path = %path.display(), "device-info file is not a JSON object; replacing it");
            None
        }
    }
}

pub fn write(path: &Path, target: &VfTarget) -> Result<(), CniError> {
    let io = |step: &str, e: std::io::Error| {
        CniError::new(
            CODE_IO,
            format!(
                "VF {}: device-info file {}: {step}: {e}",
                target.address,
                path.display()
            ),
        )
    };
    let info = content(read_object(path), target);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
    let bytes = serde_json::to_vec(&Value::Object(info)).map_err(|e| io("encoding", e.into()))?;
    crate::atomic_file::write(path, &bytes, 0o444).map_err(|e| io("writing", e))
}

/// DEL: remove the file ADD wrote for `vf`. A file that names another
/// device is not ours to delete and stays. Best effort: a leftover file
/// holds no VF or address, so a failure is logged, not returned.
pub fn remove(conf: &NetConf, vf: &str) {
    let Some(path) = requested_path(conf) else {
        return;
    };
    let names_our_vf = read_object(path)
        .as_ref()
        .and_then(|info| info.get("pci"))
        .and_then(|pci| pci.get("pci-address"))
        .and_then(Value::as_str)
        .is_some_and(|address| address == vf);
    if !names_our_vf {
        if path.exists() {
            tracing::info!(vf, path = %path.display(), "device-info file names another device; left alone");
        }
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(vf, path = %path.display(), error = %e, "DEL: removing the device-info file failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::state::Mode;

    fn target() -> VfTarget {
        VfTarget {
            address: "0000:3b:01.2".parse().unwrap(),
            pf_address: "0000:3b:00.0".parse().unwrap(),
            pf_name: "ens1f0".into(),
            vf_index: 2,
            driver: "iavf".into(),
            mode: Mode::Kernel,
        }
    }

    #[test]
    fn new_file_has_the_spec_shape() {
        let info = Value::Object(content(None, &target()));
        assert_eq!(
            info,
            json!({"type": "pci", "version": "1.1.0",
                   "pci": {"pci-address": "0000:3b:01.2", "pf-pci-address": "0000:3b:00.0"}})
        );
    }

    #[test]
    fn device_plugin_keys_survive_and_ours_win() {
        // what Multus copies from the device plugin's file (a 1.0.0 one here)
        let from_dp = json!({"type": "pci", "version": "1.0.0",
                             "pci": {"pci-address": "0000:3b:01.2", "rdma-device": "mlx5_3"}});
        let Value::Object(existing) = from_dp else {
            unreachable!()
        };
        let info = Value::Object(content(Some(existing), &target()));
        assert_eq!(info["version"], "1.1.0");
        assert_eq!(info["pci"]["rdma-device"], "mlx5_3");
        assert_eq!(info["pci"]["pf-pci-address"], "0000:3b:00.0");
    }
}
