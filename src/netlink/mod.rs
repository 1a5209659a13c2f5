//! The rtnetlink boundary: the only module that talks NETLINK_ROUTE.
//!
//! Synchronous on purpose: the CNI plugin runs once per pod start and a
//! blocking request/ack on one socket is both the fastest and the simplest
//! way to do a handful of link operations. A socket is bound to the network
//! namespace it was created in, so callers that work in another namespace
//! open the socket there (see `netns::run_in`) and may then use it anywhere.

mod address;
mod link;
mod monitor;
mod neighbour;
mod route;
mod socket;
mod vf;

pub use address::{AddressOps, IfAddress};
pub use link::{format_mac, parse_mac, Link, LinkOps};
pub use monitor::{LinkCounters, LinkEvent, LinkStatus, LinkTable};
pub use neighbour::NeighbourOps;
pub use route::{default_route_netdevs, default_route_netdevs_with, Route, RouteOps};
pub use socket::Netlink;
pub use vf::{HostPf, LinkState, PfOps, PfVfs, VfConfig, VfSetting, VlanProto};
/// For fakes that check the bytes the kernel would receive.
#[cfg(test)]
pub(crate) use {socket::request_bytes, vf::set_vf_request};

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: cannot decode the kernel's reply: {detail}")]
    Decode { op: String, detail: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, so callers can match `EEXIST`,
    /// `ENODEV`, `EOPNOTSUPP` instead of comparing strings.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }

    /// The driver does not implement the operation (a VF attribute on a
    /// PF that is not SR-IOV capable, or a driver without it).
    pub fn is_not_supported(&self) -> bool {
        self.errno() == Some(libc_errno::EOPNOTSUPP)
    }

    /// A driver busy resetting the VF; worth another try.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc_errno::EAGAIN) | Some(libc_errno::EBUSY)
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc_errno::ENODEV) | Some(libc_errno::ENOENT)
        )
    }
}

/// The few errno values we match on (values from the kernel's uapi).
pub mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EAGAIN: i32 = 11;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ERANGE: i32 = 34;
    pub const EOPNOTSUPP: i32 = 95;
}
