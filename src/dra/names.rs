//! The API server's name rules that DRA objects must follow, and the names
//! we derive from device IDs. Pure.

/// Longest DNS label (RFC 1123): device names, path segments.
pub const DNS_LABEL_MAX: usize = 63;
/// Longest DNS subdomain: object names, driver names.
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// An RFC 1123 label: lower-case alphanumerics and `-`, starting and ending
/// alphanumeric, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= DNS_SUBDOMAIN_MAX && name.split('.').all(is_dns_label)
}

/// Longest DRA driver name.
pub const DRIVER_NAME_MAX: usize = 63;

/// A DRA driver name: a DNS subdomain of at most [`DRIVER_NAME_MAX`]
/// characters (the API server refuses slices of longer ones).
pub fn is_driver_name(name: &str) -> bool {
    name.len() <= DRIVER_NAME_MAX && is_dns_subdomain(name)
}

/// A ResourceSlice pool name: DNS subdomains separated by `/`, at most 253
/// characters.
pub fn is_pool_name(name: &str) -> bool {
    name.len() <= DNS_SUBDOMAIN_MAX && name.split('/').all(is_dns_subdomain)
}

/// An attribute or capacity name: `<C identifier>` (in the driver's domain)
/// or `<DNS subdomain>/<C identifier>`, the identifier at most 32
/// characters.
pub fn is_qualified_attribute_name(name: &str) -> bool {
    let (domain, id) = match name.split_once('/') {
        Some((domain, id)) => (Some(domain), id),
        None => (None, name),
    };
    let id_ok = !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !id.as_bytes()[0].is_ascii_digit();
    id_ok && domain.is_none_or(is_dns_subdomain)
}

/// A DNS label from a device ID: `0000:3b:01.0` → `0000-3b-01-0`,
/// `mlx5_core.sf.2` → `mlx5-core-sf-2`. Lower-cased; every other character
/// becomes `-`. None when nothing of a label is left or it is too long.
pub fn device_name(id: &str) -> Option<String> {
    let name: String = id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    is_dns_label(&name).then_some(name)
}

/// The PCI address a [`device_name`] was made from, when it was made from
/// one (`0000-3b-01-0` → `0000:3b:01.0`): the way back for a device a DRA
/// claim names.
pub fn pci_address_of(device: &str) -> Option<crate::pci::PciAddress> {
    let mut parts = device.split('-');
    let (domain, bus, slot, function) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    format!("{domain}:{bus}:{slot}.{function}").parse().ok()
}

/// The label form of a config name (`sriov_netdevice` → `sriov-netdevice`),
/// with the same rules as [`device_name`].
pub fn label_of(name: &str) -> Option<String> {
    device_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pci_device_name_leads_back_to_its_address_and_nothing_else_does() {
        for id in ["0000:3b:01.0", "0000:af:1f.7"] {
            let name = device_name(id).unwrap();
            assert_eq!(
                pci_address_of(&name).map(|a| a.to_string()).as_deref(),
                Some(id),
                "{name}"
            );
        }
        for name in [
            "mlx5-core-sf-2",
            "0000-3b-01",
            "0000-3b-01-0-1",
            "zz-3b-01-0",
        ] {
            assert_eq!(pci_address_of(name), None, "{name}");
        }
    }

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns_label("0000-3b-01-0"));
        assert!(!is_dns_label("0000:3b:01.0"));
        assert!(!is_dns_label("-a") && !is_dns_label("a-") && !is_dns_label(""));
        assert!(!is_dns_label("Upper"));
        assert!(is_dns_label(&"a".repeat(63)) && !is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("sriov.rs.k8s.io"));
        assert!(!is_dns_subdomain("sriov..io") && !is_dns_subdomain("intel.com/x"));
        assert!(is_pool_name("worker-1/intel.com/sriov-net"));
        assert!(!is_pool_name("worker-1/sriov_net"));
    }

    #[test]
    fn attribute_names() {
        assert!(is_qualified_attribute_name(
            "resource.kubernetes.io/pciBusID"
        ));
        assert!(is_qualified_attribute_name("vfIndex"));
        assert!(!is_qualified_attribute_name("9lives"));
        assert!(!is_qualified_attribute_name("a-b"));
        assert!(!is_qualified_attribute_name("Bad_Domain/x"));
        assert!(!is_qualified_attribute_name(&"a".repeat(33)));
    }

    #[test]
    fn device_names_from_ids() {
        assert_eq!(device_name("0000:3b:01.0").as_deref(), Some("0000-3b-01-0"));
        assert_eq!(
            device_name("mlx5_core.sf.2").as_deref(),
            Some("mlx5-core-sf-2")
        );
        assert_eq!(label_of("sriov_NET").as_deref(), Some("sriov-net"));
        assert_eq!(device_name("::"), None);
        assert_eq!(device_name(&"a".repeat(64)), None);
    }
}
