//! PCI addresses (BDF) as the kernel writes them: `dddd:bb:dd.f`.

use std::fmt;
use std::str::FromStr;

/// A PCI function address, e.g. `0000:3b:02.1`.
///
/// Ordering follows the routing ID, which is also the order the kernel
/// enumerates functions in, so sorted lists read like `lspci`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {input:?}: expected dddd:bb:dd.f (hex), e.g. 0000:3b:02.1")]
pub struct PciAddressError {
    pub input: String,
}

impl PciAddress {
    /// The 16-bit routing ID (bus << 8 | devfn) used by SR-IOV's
    /// `First VF Offset` and `VF Stride` arithmetic.
    pub fn routing_id(&self) -> u16 {
        (u16::from(self.bus) << 8) | (u16::from(self.device) << 3) | u16::from(self.function)
    }

    pub fn from_routing_id(domain: u16, rid: u16) -> Self {
        PciAddress {
            domain,
            bus: (rid >> 8) as u8,
            device: ((rid >> 3) & 0x1f) as u8,
            function: (rid & 0x7) as u8,
        }
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PciAddressError {
            input: s.to_owned(),
        };
        let (domain, rest) = s.split_once(':').ok_or_else(err)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(err)?;
        let (device, function) = rest.split_once('.').ok_or_else(err)?;
        let hex = |part: &str, max_len: usize| {
            if part.is_empty()
                || part.len() > max_len
                || !part.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        let domain = hex(domain, 4)?;
        let bus = hex(bus, 2)?;
        let device = hex(device, 2)?;
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(err());
        }
        Ok(PciAddress {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl serde::Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_form() {
        let a: PciAddress = "0000:3b:02.1".parse().unwrap();
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 0x3b,
                device: 2,
                function: 1
            }
        );
        assert_eq!(a.to_string(), "0000:3b:02.1");
        // upper-case hex is accepted and printed the way the kernel does (lower case)
        let b: PciAddress = "0000:AF:1F.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:af:1f.7");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "3b:02.1",
            "0000:3b:02",
            "0000:3b:20.0",
            "0000:3b:02.8",
            "0000:3bb:02.1",
            "x000:3b:02.1",
            "0000:3b:02.1 ",
        ] {
            assert!(
                bad.parse::<PciAddress>().is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn routing_id_round_trips_and_orders_like_lspci() {
        let pf: PciAddress = "0000:3b:00.0".parse().unwrap();
        // First VF Offset 8, stride 1: VF0 at 3b:01.0 as on an E810 port 0
        let vf0 = PciAddress::from_routing_id(0, pf.routing_id() + 8);
        assert_eq!(vf0.to_string(), "0000:3b:01.0");
        let vf9 = PciAddress::from_routing_id(0, pf.routing_id() + 8 + 9);
        assert_eq!(vf9.to_string(), "0000:3b:02.1");
        assert!(pf < vf0 && vf0 < vf9);
    }
}
