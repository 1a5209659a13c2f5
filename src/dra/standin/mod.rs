//! An in-process stand-in for the API server's part in DRA, for
//! development and tests (no real API server runs on our machines): it
//! stores ResourceSlices and ResourceClaims and refuses what the real one
//! would refuse, as far as docs/dra.md lists. Not compiled into the daemon:
//! only under `cfg(test)` or the `devtools` feature (with the
//! stand-in kubelet; the shipped daemons build without it).
//!
//! - [`validate`]: a ResourceSlice's validation, pure;
//! - [`selectors`]: field and label selectors, parsed and refused as the
//!   API server does, pure;
//! - [`store`]: the objects, `resourceVersion` conflicts, field selectors,
//!   and claims as a [`super::claims::ClaimSource`];
//! - [`rest`]: the API server's REST answers over the store (paths,
//!   versions, conversion, `Status` errors), pure;
//! - [`http`]: those answers served over HTTP on loopback, for the `kube`
//!   client and `sriovctl apiserver-sim`.

pub mod http;
pub mod rest;
pub mod selectors;
pub mod store;
pub mod validate;

pub use http::HttpStandin;
pub use store::{ApiServerStandin, StandinError};
pub use validate::validate_slice;
