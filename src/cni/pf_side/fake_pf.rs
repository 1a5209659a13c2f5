//! A PF for tests: the kernel's half (rtnetlink's parsing of IFLA_VFINFO_LIST
//! and its `ifla_vf_policy`, then `do_setvfinfo`) and a driver's half
//! (ice-like rules), fed the exact bytes `netlink::vf` would send. Nothing
//! here trusts the `VfSetting` a caller passes: it applies what the message
//! bytes say, laid out as include/uapi/linux/if_link.h defines them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use crate::netlink::{
    request_bytes, set_vf_request, NetlinkError, PfOps, PfVfs, VfConfig, VfSetting, VlanProto,
};
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use std::cell::RefCell;
use std::rc::Rc;

const EPERM: i32 = 1;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;
const EBUSY: i32 = 16;
const EPROTONOSUPPORT: i32 = 93;
const EOPNOTSUPP: i32 = 95;

// uapi attribute numbers
const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_VF_INFO: u16 = 1;
const IFLA_VF_MAC: u16 = 1;
const IFLA_VF_VLAN: u16 = 2;
const IFLA_VF_TX_RATE: u16 = 3;
const IFLA_VF_SPOOFCHK: u16 = 4;
const IFLA_VF_LINK_STATE: u16 = 5;
const IFLA_VF_RATE: u16 = 6;
const IFLA_VF_TRUST: u16 = 9;
const IFLA_VF_VLAN_LIST: u16 = 12;
const IFLA_VF_VLAN_INFO: u16 = 1;
const NLA_TYPE_MASK: u16 = !0xc000;

pub struct FakePf {
    pub name: String,
    pub index: u32,
    /// false: a netdev without VF support (a veth): no VF table, and
    /// EOPNOTSUPP for any VF attribute.
    pub vf_info: bool,
    pub vfs: Vec<VfConfig>,
    /// The MAC each VF netdev has (what the VF driver itself uses).
    pub netdev_macs: Vec<[u8; 6]>,
    /// IFLA_VF_* the driver does not implement, by NAD key (igb has no
    /// link_state, for instance): EOPNOTSUPP.
    pub unsupported: Vec<&'static str>,
    /// The driver answers EBUSY to this many more set requests.
    pub busy: u32,
    /// After an admin MAC change, this many reads still show the old MAC
    /// (i40e applies it through an asynchronous VF reset).
    pub mac_lag: u32,
    /// The driver rounds max_tx_rate up to a multiple of this (i40e: 50).
    pub rate_step: Option<u32>,
    /// The driver cannot do 802.1ad port VLANs (EPROTONOSUPPORT).
    pub no_qinq: bool,
    /// Every change the driver made, in order: "vlan 1", "mac 1", ...
    pub log: Vec<String>,
    lagging: Option<(u32, [u8; 6], u32)>,
}

pub fn vf_config(vf: u32) -> VfConfig {
    VfConfig {
        spoofchk: true,
        ..VfConfig::unset(vf)
    }
}

impl FakePf {
    /// An SR-IOV PF `ens1f0` (ifindex 4) with `num_vfs` VFs in their
    /// driver defaults: no admin MAC, no VLAN, spoofchk on, trust off.
    pub fn sriov(num_vfs: u32) -> FakePf {
        FakePf {
            name: "ens1f0".into(),
            index: 4,
            vf_info: true,
            vfs: (0..num_vfs).map(vf_config).collect(),
            netdev_macs: (0..num_vfs)
                .map(|i| [0x02, 0xee, 0, 0, 0, i as u8])
                .collect(),
            unsupported: Vec::new(),
            busy: 0,
            mac_lag: 0,
            rate_step: None,
            no_qinq: false,
            log: Vec::new(),
            lagging: None,
        }
    }

    /// What a veth "PF" on the simulated node is.
    pub fn veth() -> FakePf {
        FakePf {
            vf_info: false,
            vfs: Vec::new(),
            netdev_macs: Vec::new(),
            ..FakePf::sriov(0)
        }
    }

    pub fn shared(self) -> Shared {
        Shared(Rc::new(RefCell::new(self)))
    }

    /// The VF driver asks to use `mac` on its netdev (what `ip link set
    /// <vf> address` turns into). ice and i40e refuse while an admin MAC is
    /// set and the VF is not trusted, unless it is that same MAC.
    pub fn vf_sets_own_mac(&mut self, vf: u32, mac: [u8; 6]) -> Result<(), i32> {
        let config = &self.vfs[vf as usize];
        if config.mac != [0; 6] && !config.trust && mac != config.mac {
            return Err(EPERM);
        }
        self.netdev_macs[vf as usize] = mac;
        self.log.push(format!("netdev mac {vf}"));
        Ok(())
    }

    /// The kernel's side of RTM_SETLINK with IFLA_VFINFO_LIST, from bytes.
    fn receive(&mut self, bytes: &[u8]) -> Result<(), i32> {
        // nlmsghdr (16) + ifinfomsg (16): ifi_index at offset 20
        let index = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
        if index != self.index {
            return Err(ENODEV);
        }
        for (kind, list) in attributes(&bytes[32..])? {
            if kind != IFLA_VFINFO_LIST {
                continue;
            }
            for (kind, info) in attributes(list)? {
                if kind != IFLA_VF_INFO {
                    return Err(EINVAL);
                }
                let attrs = attributes(info)?;
                // ifla_vf_policy: minimum sizes, checked before any driver call
                for (kind, payload) in &attrs {
                    let min = match *kind {
                        IFLA_VF_MAC => 36,
                        IFLA_VF_VLAN => 12,
                        IFLA_VF_RATE => 12,
                        IFLA_VF_TX_RATE | IFLA_VF_SPOOFCHK | IFLA_VF_LINK_STATE | IFLA_VF_TRUST => {
                            8
                        }
                        _ => 0,
                    };
                    if payload.len() < min {
                        return Err(ERANGE);
                    }
                }
                let find = |wanted: u16| {
                    attrs
                        .iter()
                        .find(|(kind, _)| *kind == wanted)
                        .map(|(_, payload)| *payload)
                };
                // do_setvfinfo's order
                if let Some(p) = find(IFLA_VF_MAC) {
                    self.driver_mac(u32_at(p, 0), p[4..10].try_into().unwrap())?;
                }
                if let Some(list) = find(IFLA_VF_VLAN_LIST) {
                    self.supported("vlan")?;
                    let entries = attributes(list)?;
                    let Some((IFLA_VF_VLAN_INFO, p)) = entries.first().copied() else {
                        return Err(EINVAL);
                    };
                    if p.len() < 16 {
                        return Err(EINVAL);
                    }
                    let proto = u16::from_be_bytes([p[12], p[13]]);
                    self.driver_vlan(u32_at(p, 0), u32_at(p, 4), u32_at(p, 8), proto)?;
                }
                if let Some(p) = find(IFLA_VF_RATE) {
                    self.driver_rate(u32_at(p, 0), u32_at(p, 4), u32_at(p, 8))?;
                }
                if let Some(p) = find(IFLA_VF_SPOOFCHK) {
                    self.driver_flag("spoofchk", u32_at(p, 0), u32_at(p, 4))?;
                }
                if let Some(p) = find(IFLA_VF_LINK_STATE) {
                    self.driver_link_state(u32_at(p, 0), u32_at(p, 4))?;
                }
                if let Some(p) = find(IFLA_VF_TRUST) {
                    self.driver_flag("trust", u32_at(p, 0), u32_at(p, 4))?;
                }
            }
        }
        Ok(())
    }

    fn supported(&mut self, key: &'static str) -> Result<(), i32> {
        if !self.vf_info || self.unsupported.contains(&key) {
            return Err(EOPNOTSUPP);
        }
        if self.busy > 0 {
            self.busy -= 1;
            return Err(EBUSY);
        }
        Ok(())
    }

    fn vf_mut(&mut self, vf: u32) -> Result<&mut VfConfig, i32> {
        self.vfs.get_mut(vf as usize).ok_or(EINVAL)
    }

    fn driver_mac(&mut self, vf: u32, mac: [u8; 6]) -> Result<(), i32> {
        self.supported("mac")?;
        if mac[0] & 1 == 1 {
            return Err(EINVAL);
        }
        let old = self.vf_mut(vf)?.mac;
        self.vf_mut(vf)?.mac = mac;
        if mac != [0; 6] {
            // the VF is reset and comes back using the admin MAC
            self.netdev_macs[vf as usize] = mac;
        }
        if self.mac_lag > 0 {
            self.lagging = Some((vf, old, self.mac_lag));
        }
        self.log.push(format!("mac {vf}"));
        Ok(())
    }

    fn driver_vlan(&mut self, vf: u32, vlan: u32, qos: u32, proto: u16) -> Result<(), i32> {
        if vlan > 4095 || qos > 7 {
            return Err(EINVAL);
        }
        let proto = match VlanProto::from_ethertype(proto) {
            Some(VlanProto::Dot1Ad) if self.no_qinq => return Err(EPROTONOSUPPORT),
            Some(proto) => proto,
            None => return Err(EPROTONOSUPPORT),
        };
        let config = self.vf_mut(vf)?;
        (config.vlan, config.qos, config.vlan_proto) = (vlan, qos, proto);
        self.log.push(format!("vlan {vf}"));
        Ok(())
    }

    fn driver_rate(&mut self, vf: u32, min: u32, max: u32) -> Result<(), i32> {
        self.supported("min_tx_rate/max_tx_rate")?;
        if max != 0 && min > max {
            return Err(EINVAL);
        }
        let max = match self.rate_step {
            Some(step) if !max.is_multiple_of(step) => (max / step + 1) * step,
            _ => max,
        };
        let config = self.vf_mut(vf)?;
        (config.min_tx_rate, config.max_tx_rate) = (min, max);
        self.log.push(format!("rate {vf}"));
        Ok(())
    }

    fn driver_flag(&mut self, key: &'static str, vf: u32, setting: u32) -> Result<(), i32> {
        self.supported(key)?;
        let config = self.vf_mut(vf)?;
        if key == "trust" {
            config.trust = setting != 0;
        } else {
            config.spoofchk = setting != 0;
        }
        self.log.push(format!("{key} {vf}"));
        Ok(())
    }

    fn driver_link_state(&mut self, vf: u32, state: u32) -> Result<(), i32> {
        self.supported("link_state")?;
        if state > 2 {
            return Err(EINVAL);
        }
        self.vf_mut(vf)?.link_state = state.into();
        self.log.push(format!("link_state {vf}"));
        Ok(())
    }
}

fn u32_at(payload: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(payload[offset..offset + 4].try_into().unwrap())
}

/// The nlattrs in `bytes`: (type without flags, payload). EINVAL for a
/// malformed one, as nla_parse would.
fn attributes(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, i32> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_le_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return Err(EINVAL);
        }
        out.push((kind, &rest[4..len]));
        let padded = (len + 3) & !3;
        rest = &rest[padded.min(rest.len())..];
    }
    Ok(out)
}

fn kernel_error(op: String, errno: i32) -> NetlinkError {
    NetlinkError::Kernel {
        op,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

/// A handle the code under test can hold as its `PfOps` while the test
/// (or a closure standing in for the VF netdev) reaches the same PF.
#[derive(Clone)]
pub struct Shared(pub Rc<RefCell<FakePf>>);

impl Shared {
    pub fn pf(&self) -> std::cell::RefMut<'_, FakePf> {
        self.0.borrow_mut()
    }
}

impl PfOps for Shared {
    fn pf_vfs(&mut self, pf: &str) -> Result<Option<PfVfs>, NetlinkError> {
        let mut fake = self.0.borrow_mut();
        if pf != fake.name {
            return Ok(None);
        }
        if !fake.vf_info {
            return Ok(Some(PfVfs {
                index: fake.index,
                vfs: None,
            }));
        }
        let mut vfs = fake.vfs.clone();
        if let Some((vf, old, reads)) = fake.lagging {
            vfs[vf as usize].mac = old;
            fake.lagging = (reads > 1).then_some((vf, old, reads - 1));
        }
        Ok(Some(PfVfs {
            index: fake.index,
            vfs: Some(vfs),
        }))
    }

    fn set_vf(&mut self, pf_index: u32, vf: u32, setting: VfSetting) -> Result<(), NetlinkError> {
        let bytes = request_bytes(
            RouteNetlinkMessage::SetLink(set_vf_request(pf_index, vf, setting)),
            NLM_F_REQUEST | NLM_F_ACK,
            1,
        );
        self.0
            .borrow_mut()
            .receive(&bytes)
            .map_err(|errno| kernel_error(format!("set link #{pf_index} vf {vf} {setting}"), errno))
    }
}
