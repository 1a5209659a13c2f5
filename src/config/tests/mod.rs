//! Tests for the config module. Pure: configs are strings, devices are `DeviceFacts` built here.
// Tests may panic on a broken fixture; that is the point of a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod matching;
mod parsing;
mod pools;
mod ranges;
mod validation;

use super::{parse, ConfigError, DeviceFacts, LoadedConfig};

pub(super) const ETHERNET: u32 = 0x02_00_00;
pub(super) const INFINIBAND: u32 = 0x02_07_00;
pub(super) const ACCELERATOR: u32 = 0x12_00_00;

/// Parse with the upstream default prefix; panic with the error text on failure.
pub(super) fn load_ok(text: &str) -> LoadedConfig {
    match parse(text, "intel.com") {
        Ok(loaded) => loaded,
        Err(e) => panic!("config should load, got: {e}"),
    }
}

/// Parse and expect an error; return it.
pub(super) fn load_err(text: &str) -> ConfigError {
    match parse(text, "intel.com") {
        Ok(loaded) => panic!("config should be refused, loaded: {loaded:?}"),
        Err(e) => e,
    }
}

/// A one-resource config with the given selectors JSON (and optional extra resource keys).
pub(super) fn one_resource(selectors: &str) -> String {
    format!(r#"{{"resourceList": [{{"resourceName": "pool_a", "selectors": {selectors}}}]}}"#)
}

/// A VF bound to `driver`, on PF `pf_name` at `pf_pci`, with index `index`.
pub(super) fn vf(
    pci: &str,
    (vendor, device): (u16, u16),
    driver: &str,
    (pf_name, pf_pci): (&str, &str),
    index: u32,
) -> DeviceFacts {
    DeviceFacts {
        driver: Some(driver.into()),
        pf_name: Some(pf_name.into()),
        pf_pci_address: Some(pf_pci.into()),
        vf_index: Some(index),
        link_type: Some("ether".into()),
        ..DeviceFacts::pci(pci, vendor, device, ETHERNET)
    }
}

/// `count` VFs of one PF, VF n at `<domain:bus>:<slot>.<fn>` numbered the way Intel and
/// Mellanox NICs lay them out (8 functions per slot, starting at slot `first_slot`).
pub(super) fn vfs_of(
    pf: (&str, &str),
    bus: &str,
    first_slot: u32,
    ids: (u16, u16),
    driver: &str,
    count: u32,
) -> Vec<DeviceFacts> {
    (0..count)
        .map(|n| {
            let slot = first_slot + n / 8;
            let pci = format!("{bus}:{slot:02x}.{}", n % 8);
            vf(&pci, ids, driver, pf, n)
        })
        .collect()
}

/// Intel E810 VF (iavf).
pub(super) const E810_VF: (u16, u16) = (0x8086, 0x1889);
/// Intel X710 VF (iavf; `i40evf` on old kernels).
pub(super) const X710_VF: (u16, u16) = (0x8086, 0x154c);
/// Mellanox ConnectX-5 VF (mlx5_core).
pub(super) const CX5_VF: (u16, u16) = (0x15b3, 0x1018);
/// Mellanox ConnectX-6 Dx VF (mlx5_core).
pub(super) const CX6DX_VF: (u16, u16) = (0x15b3, 0x101e);
