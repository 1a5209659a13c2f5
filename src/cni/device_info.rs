//! The CNI device-info file (device-info spec 1.1.0) the runtime asks for
//! through `runtimeConfig.CNIDeviceInfoFile`. Multus usually copies the
//! device plugin's file there first: we keep its keys and fill in ours.

use super::error::{CniError, CODE_IO};
use super::vf_target::VfTarget;
use serde_json::{json, Map, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub fn write(path: &Path, target: &VfTarget) -> Result<(), CniError> {
    let io = |step: &str, e: std::io::Error| {
        CniError::new(
            CODE_IO,
            format!("device-info file {}: {step}: {e}", path.display()),
        )
    };
    let mut info: Map<String, Value> = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    info.insert("type".into(), json!("pci"));
    info.insert("version".into(), json!("1.1.0"));
    let pci = info.entry("pci").or_insert_with(|| json!({}));
    if let Some(pci) = pci.as_object_mut() {
        pci.insert("pci-address".into(), json!(target.address.to_string()));
        pci.insert(
            "pf-pci-address".into(),
            json!(target.pf_address.to_string()),
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
    }
    // files are 0444 by convention and the library refuses to overwrite: replace
    let _ = std::fs::remove_file(path);
    let bytes = serde_json::to_vec(&Value::Object(info))
        .map_err(|e| CniError::new(CODE_IO, e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| io("writing", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| io("chmod", e))
}
