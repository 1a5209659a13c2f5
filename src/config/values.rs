//! Checks for single selector values. Each returns the parsed value or a reason that tells the
//! person what to write instead.
//!
//! The rule throughout: upstream compares these strings verbatim against what sysfs or netlink
//! reports, so a value that can never equal such a report matches nothing, silently. We refuse
//! exactly those values (and no others), which keeps every config we accept giving the same
//! pools as upstream.

/// A PCI vendor or device ID: 4 hex digits, lower case, as sysfs and upstream's PCI library
/// report them (`"8086"`, `"15b3"`).
pub(crate) fn hex_id(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    if let Some(digits) = digits {
        return Err(format!(
            "write the 4 hex digits without \"0x\", e.g. {:?}",
            digits.to_ascii_lowercase()
        ));
    }
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be exactly 4 hex digits, e.g. \"8086\"".to_string());
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "write it in lower case ({:?}): IDs are compared as text and are reported in lower case",
            text.to_ascii_lowercase()
        ));
    }
    u16::from_str_radix(text, 16).map_err(|e| e.to_string())
}

/// A driver name (basename of the `driver` link): non-empty, no blanks, no `/`.
pub(crate) fn driver(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    if text.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("a driver name has no blanks or '/'".to_string());
    }
    Ok(text.to_string())
}

/// A full PCI address `dddd:bb:dd.f`. Upstream compares `pciAddresses` exactly (so only lower
/// case can match) but `rootDevices` case-insensitively; `ignore_case` picks the rule. The result
/// is lower case.
pub(crate) fn pci_address(text: &str, ignore_case: bool) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    if !is_full_bdf(&lower) {
        if is_short_bdf(&lower) {
            return Err(format!(
                "write the full address with its PCI domain, e.g. \"0000:{lower}\""
            ));
        }
        return Err("must be a full PCI address like \"0000:03:02.0\"".to_string());
    }
    if !ignore_case && lower != text {
        return Err(format!(
            "write it in lower case ({lower:?}): addresses are compared as text and sysfs uses lower case"
        ));
    }
    Ok(lower)
}

/// `dddd:bb:dd.f` with a 4- to 8-digit domain, device 00-1f, function 0-7 (lower case input).
pub(crate) fn is_full_bdf(text: &str) -> bool {
    let Some((domain, rest)) = text.split_once(':') else {
        return false;
    };
    (4..=8).contains(&domain.len()) && is_hex(domain) && is_short_bdf(rest)
}

/// `bb:dd.f` (lower case input).
fn is_short_bdf(text: &str) -> bool {
    let Some((bus, rest)) = text.split_once(':') else {
        return false;
    };
    let Some((device, function)) = rest.split_once('.') else {
        return false;
    };
    let device_ok = device.len() == 2
        && is_hex(device)
        && u8::from_str_radix(device, 16).is_ok_and(|d| d <= 0x1f);
    let function_ok = function.len() == 1 && matches!(function.as_bytes()[0], b'0'..=b'7');
    bus.len() == 2 && is_hex(bus) && device_ok && function_ok
}

fn is_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An `acpi_index` value. sysfs prints it as a plain decimal number, so `"0101"` could never be
/// equal to it.
pub(crate) fn acpi_index(text: &str) -> Result<u32, String> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err("must be a decimal number, e.g. \"101\"".to_string());
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(format!(
            "drop the leading zeros ({:?}): sysfs prints the index without them",
            text.trim_start_matches('0')
        ));
    }
    text.parse()
        .map_err(|_| "is too large for an ACPI index".to_string())
}

/// A network interface name as the kernel allows it (`dev_valid_name`): 1-15 bytes, not `.` or
/// `..`, no `/`, `:` or blanks. A longer or odd name can never be a PF's name.
pub(crate) fn if_name(text: &str) -> Result<(), String> {
    if text.len() > 15 {
        return Err("an interface name has at most 15 characters".to_string());
    }
    if text == "." || text == ".." {
        return Err("is not an interface name".to_string());
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == ':')
    {
        let hint = if is_full_bdf(&text.to_ascii_lowercase()) {
            " (a PCI address belongs in `rootDevices`)"
        } else {
            ""
        };
        return Err(format!("an interface name has no blanks, '/' or ':'{hint}"));
    }
    Ok(())
}

/// A netlink link (encapsulation) type, as netlink libraries name them: lower case, no blanks.
/// The common slips (`eth`, `ib`) are refused with the right word.
pub(crate) fn link_type(text: &str) -> Result<String, String> {
    let hint = match text.to_ascii_lowercase().as_str() {
        "eth" | "ethernet" => Some("ether"),
        "ib" => Some("infiniband"),
        _ => None,
    };
    if let Some(right) = hint {
        return Err(format!("the link type is called {right:?}"));
    }
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_uppercase()) {
        return Err(format!(
            "link types are lower case without blanks, e.g. \"ether\", \"infiniband\" (got {:?})",
            text
        ));
    }
    Ok(text.to_string())
}

/// An InfiniBand partition key: `0x` and 1-4 hex digits (either case), as a 16-bit value.
///
/// Difference: upstream compares the configured text with the text its IB helper reads from
/// sysfs, so only one spelling of a key can match. We compare values, so `0x1`, `0x0001` and
/// `0X0001` all select P_Key 0x0001. A spelling that works upstream selects the same devices
/// here; one that upstream never matched (a different width or case) does select here.
pub(crate) fn pkey(text: &str) -> Result<u16, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| "write the key in hex with \"0x\", e.g. \"0x7fff\"".to_string())?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a partition key is \"0x\" and 1 to 4 hex digits, e.g. \"0x8001\"".to_string());
    }
    u16::from_str_radix(digits, 16).map_err(|e| e.to_string())
}

/// Free text that only has to be non-empty (DDP profile names, aux types).
pub(crate) fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("is empty".to_string())
    } else {
        Ok(text.to_string())
    }
}
