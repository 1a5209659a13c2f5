//! A PCI function's identity (vendor, device, subsystem IDs, class code).
//!
//! The kernel prints all five in one attribute, `modalias`
//! (`pci:v00008086d00001889sv00008086sd00000002bc02sc00i00`), built from the
//! same fields as the `vendor`, `device`, `subsystem_*` and `class` files, so
//! one read replaces five. A tree without `modalias` is read file by file.

use super::attr::Attrs;
use super::SysfsError;

/// Numbers, not text: every VF of a PF carries its PF's identity, and four
/// strings per VF were a quarter of a 4096-VF scan's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub vendor: u16,
    pub device: u16,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
    /// The 24-bit class code.
    pub class: u32,
}

pub(crate) fn read_identity(dir: &Attrs) -> Result<Identity, SysfsError> {
    match dir.read_optional("modalias")? {
        Some(text) => parse_modalias(&text).ok_or_else(|| SysfsError::Parse {
            path: dir.path("modalias"),
            content: text,
            expected:
                "a PCI modalias such as pci:v00008086d00001889sv00008086sd00000002bc02sc00i00",
        }),
        None => read_identity_files(dir),
    }
}

/// `pci:v<8 hex>d<8 hex>sv<8 hex>sd<8 hex>bc<2 hex>sc<2 hex>i<2 hex>`
pub(crate) fn parse_modalias(text: &str) -> Option<Identity> {
    let mut rest = text.strip_prefix("pci:")?;
    let mut field = |tag: &str, digits: usize| -> Option<String> {
        let after = rest.strip_prefix(tag)?;
        let value = after.get(..digits)?;
        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        rest = &after[digits..];
        Some(value.to_ascii_lowercase())
    };
    // IDs are 16 bits printed in 8 digits: keep the low four
    let id = |value: String| u16::from_str_radix(value.get(4..)?, 16).ok();
    let vendor = id(field("v", 8)?)?;
    let device = id(field("d", 8)?)?;
    let subsystem_vendor = id(field("sv", 8)?)?;
    let subsystem_device = id(field("sd", 8)?)?;
    let class_text = format!("{}{}{}", field("bc", 2)?, field("sc", 2)?, field("i", 2)?);
    if !rest.is_empty() {
        return None;
    }
    Some(Identity {
        vendor,
        device,
        subsystem_vendor,
        subsystem_device,
        class: u32::from_str_radix(&class_text, 16).ok()?,
    })
}

fn read_identity_files(dir: &Attrs) -> Result<Identity, SysfsError> {
    let class_text = dir.read_required("class")?;
    let class = u32::from_str_radix(class_text.trim_start_matches("0x"), 16).map_err(|_| {
        SysfsError::Parse {
            path: dir.path("class"),
            content: class_text.clone(),
            expected: "a hex class code such as 0x020000",
        }
    })?;
    Ok(Identity {
        vendor: read_hex_id(dir, "vendor")?,
        device: read_hex_id(dir, "device")?,
        subsystem_vendor: read_hex_id(dir, "subsystem_vendor")?,
        subsystem_device: read_hex_id(dir, "subsystem_device")?,
        class,
    })
}

/// `0x8086` → 0x8086
fn read_hex_id(dir: &Attrs, name: &str) -> Result<u16, SysfsError> {
    let text = dir.read_required(name)?;
    let hex = text.strip_prefix("0x").unwrap_or(&text).to_lowercase();
    match u16::from_str_radix(&hex, 16) {
        Ok(id) if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(id),
        _ => Err(SysfsError::Parse {
            path: dir.path(name),
            content: text,
            expected: "a 16-bit hex id such as 0x8086",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modalias_carries_every_id_and_the_class() {
        assert_eq!(
            parse_modalias("pci:v000015B3d0000101Esv000015B3sd00000023bc02sc00i00"),
            Some(Identity {
                vendor: 0x15b3,
                device: 0x101e,
                subsystem_vendor: 0x15b3,
                subsystem_device: 0x0023,
                class: 0x020000,
            })
        );
        assert_eq!(
            parse_modalias("pci:v00008086d00000D5Dsv00008086sd00000000bc12sc00i00")
                .map(|i| i.class),
            Some(0x120000)
        );
        for bad in [
            "",
            "usb:v1234",
            "pci:v8086d1889",
            "pci:v00008086d00001889sv00008086sd00000002bc02sc00",
            "pci:v00008086d00001889sv00008086sd00000002bc02sc00i00x",
            "pci:v0000808Gd00001889sv00008086sd00000002bc02sc00i00",
        ] {
            assert_eq!(parse_modalias(bad), None, "{bad}");
        }
    }
}
