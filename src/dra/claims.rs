//! ResourceClaims as NodePrepareResources needs them: where they come from
//! (a [`ClaimSource`]: the API server through `kube` later, the stand-in in
//! development) and the checks a claim must pass before we prepare it. Pure.

use k8s_openapi::api::resource::v1::ResourceClaim;
use std::future::Future;

/// The kubelet's reference to a claim: it passes nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for ClaimRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// One device of a claim's allocation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedDevice {
    /// The claim's request it was allocated for.
    pub request: String,
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// What we read of a claim, whichever API version served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    pub uid: String,
    /// Every device of the allocation, every driver's; empty when the
    /// claim is not allocated.
    pub devices: Vec<AllocatedDevice>,
    pub allocated: bool,
}

impl ClaimView {
    /// From a `resource.k8s.io/v1` claim.
    pub fn from_v1(claim: &ResourceClaim) -> Self {
        let allocation = claim.status.as_ref().and_then(|s| s.allocation.as_ref());
        let devices = allocation
            .and_then(|a| a.devices.as_ref())
            .and_then(|d| d.results.as_ref())
            .map(|results| {
                results
                    .iter()
                    .map(|r| AllocatedDevice {
                        request: r.request.clone(),
                        driver: r.driver.clone(),
                        pool: r.pool.clone(),
                        device: r.device.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ClaimView {
            uid: claim.metadata.uid.clone().unwrap_or_default(),
            devices,
            allocated: allocation.is_some(),
        }
    }
}

impl ClaimView {
    /// From a `resource.k8s.io/v1beta1` claim (Kubernetes 1.32 and 1.33
    /// serve claims only in that version).
    pub fn from_v1beta1(claim: &k8s_openapi::api::resource::v1beta1::ResourceClaim) -> Self {
        let allocation = claim.status.as_ref().and_then(|s| s.allocation.as_ref());
        let devices = allocation
            .and_then(|a| a.devices.as_ref())
            .and_then(|d| d.results.as_ref())
            .map(|results| {
                results
                    .iter()
                    .map(|r| AllocatedDevice {
                        request: r.request.clone(),
                        driver: r.driver.clone(),
                        pool: r.pool.clone(),
                        device: r.device.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ClaimView {
            uid: claim.metadata.uid.clone().unwrap_or_default(),
            devices,
            allocated: allocation.is_some(),
        }
    }
}

/// Why a claim could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimSourceError {
    /// The API server (or stand-in) could not be asked; worth a retry.
    #[error("read claim {namespace}/{name}: {message}")]
    Unavailable {
        namespace: String,
        name: String,
        message: String,
    },
}

/// Where claims are read from. `Ok(None)`: no such claim.
pub trait ClaimSource: Send + Sync {
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ClaimView>, ClaimSourceError>> + Send;
}

/// Why a claim is refused; each becomes that claim's `error` in the
/// response, never a failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim {claim}: not found")]
    NotFound { claim: Box<ClaimRef> },
    #[error(
        "claim {claim}: the API server has UID {found}: the claim was deleted and created again"
    )]
    UidMismatch { claim: Box<ClaimRef>, found: String },
    #[error("claim {claim}: not allocated")]
    NotAllocated { claim: Box<ClaimRef> },
    #[error("claim {claim}: its allocation has no device of driver {driver}")]
    NoDeviceOfDriver {
        claim: Box<ClaimRef>,
        driver: String,
    },
    #[error("claim {claim}: device {pool}/{device} is not a device of node {node}")]
    NotOnThisNode {
        claim: Box<ClaimRef>,
        pool: String,
        device: String,
        node: String,
    },
    #[error(
        "claim {claim}: device {pool}/{device} ({id}) is in use by {holder} through the device plugin \
         (its pool moved to DRA while the pod held it): not prepared"
    )]
    InUseByDevicePlugin {
        claim: Box<ClaimRef>,
        pool: String,
        device: String,
        id: String,
        holder: String,
    },
    #[error(transparent)]
    Source(#[from] ClaimSourceError),
}

/// The devices of `view` that are ours to prepare, after the checks: the
/// UID is the kubelet's, the claim is allocated, and at least one device
/// is of `driver`. Whether those devices are on this node is the
/// inventory's question ([`super::inventory::DraInventory`]).
pub fn our_devices(
    claim: &ClaimRef,
    view: Option<ClaimView>,
    driver: &str,
) -> Result<Vec<AllocatedDevice>, ClaimError> {
    let view = view.ok_or_else(|| ClaimError::NotFound {
        claim: Box::new(claim.clone()),
    })?;
    if view.uid != claim.uid {
        return Err(ClaimError::UidMismatch {
            claim: Box::new(claim.clone()),
            found: view.uid,
        });
    }
    if !view.allocated {
        return Err(ClaimError::NotAllocated {
            claim: Box::new(claim.clone()),
        });
    }
    let ours: Vec<AllocatedDevice> = view
        .devices
        .into_iter()
        .filter(|d| d.driver == driver)
        .collect();
    if ours.is_empty() {
        return Err(ClaimError::NoDeviceOfDriver {
            claim: Box::new(claim.clone()),
            driver: driver.to_owned(),
        });
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::resource::v1::{
        AllocationResult, DeviceAllocationResult, DeviceRequestAllocationResult,
        ResourceClaimStatus,
    };

    fn claim_ref() -> ClaimRef {
        ClaimRef {
            namespace: "ns".into(),
            name: "c".into(),
            uid: "uid-1".into(),
        }
    }

    fn v1_claim(uid: &str, results: &[(&str, &str)]) -> ResourceClaim {
        let mut claim = ResourceClaim::default();
        claim.metadata.uid = Some(uid.into());
        claim.status = Some(ResourceClaimStatus {
            allocation: Some(AllocationResult {
                devices: Some(DeviceAllocationResult {
                    results: Some(
                        results
                            .iter()
                            .map(|(driver, device)| DeviceRequestAllocationResult {
                                request: "vf".into(),
                                driver: driver.to_string(),
                                pool: "worker-1/intel.com/sriov-net".into(),
                                device: device.to_string(),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        claim
    }

    #[test]
    fn only_our_drivers_devices_of_the_right_claim() {
        let claim = v1_claim(
            "uid-1",
            &[("gpu.example.com", "gpu-0"), ("ours", "0000-3b-01-0")],
        );
        let ours = our_devices(&claim_ref(), Some(ClaimView::from_v1(&claim)), "ours").unwrap();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].device, "0000-3b-01-0");
        assert_eq!(ours[0].request, "vf");
    }

    #[test]
    fn a_v1beta1_claim_reads_the_same() {
        use k8s_openapi::api::resource::v1beta1;
        let mut claim = v1beta1::ResourceClaim::default();
        claim.metadata.uid = Some("uid-1".into());
        claim.status = Some(v1beta1::ResourceClaimStatus {
            allocation: Some(v1beta1::AllocationResult {
                devices: Some(v1beta1::DeviceAllocationResult {
                    results: Some(vec![v1beta1::DeviceRequestAllocationResult {
                        request: "vf".into(),
                        driver: "ours".into(),
                        pool: "worker-1/intel.com/sriov-net".into(),
                        device: "0000-3b-01-0".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let beta = ClaimView::from_v1beta1(&claim);
        let v1 = ClaimView::from_v1(&v1_claim("uid-1", &[("ours", "0000-3b-01-0")]));
        assert_eq!(beta, v1);
    }

    #[test]
    fn refusals_name_the_claim() {
        let r = claim_ref();
        let other_uid = ClaimView::from_v1(&v1_claim("uid-2", &[("ours", "d")]));
        let e = our_devices(&r, Some(other_uid), "ours").unwrap_err();
        assert!(matches!(e, ClaimError::UidMismatch { ref found, .. } if found == "uid-2"));
        assert!(e.to_string().contains("ns/c (uid-1)"), "{e}");
        let other_driver = ClaimView::from_v1(&v1_claim("uid-1", &[("gpu.example.com", "d")]));
        assert!(matches!(
            our_devices(&r, Some(other_driver), "ours"),
            Err(ClaimError::NoDeviceOfDriver { .. })
        ));
        assert!(matches!(
            our_devices(&r, None, "ours"),
            Err(ClaimError::NotFound { .. })
        ));
        let mut unallocated = ResourceClaim::default();
        unallocated.metadata.uid = Some("uid-1".into());
        assert!(matches!(
            our_devices(&r, Some(ClaimView::from_v1(&unallocated)), "ours"),
            Err(ClaimError::NotAllocated { .. })
        ));
    }
}
