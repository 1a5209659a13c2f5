//! Discovery over the live simulated tree (FUSE, links read from the
//! kernel) against the same node written as plain files, 16 PFs x 256 VFs,
//! runs interleaved. What the daemon reads for a one-pool config, on as
//! many threads as the scan uses. The first run over the live tree (the
//! kernel caches nothing yet) is reported apart.
//! Run as root: `cargo bench --bench live_tree` (hack/bench.sh does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a panic is the report

use sriov_rs::config;
use sriov_rs::devtools::sim::{self, layout::Layout, CreateOptions, Serve};
use sriov_rs::pool;
use sriov_rs::sysfs::SysfsRoot;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn layout() -> Layout {
    let mut layout = Layout::default_layout().unwrap();
    let template = layout.pfs[0].clone();
    layout.pfs = (0..16)
        .map(|n| {
            let mut pf = template.clone();
            // 256 VFs span two buses past the PF's
            pf.pci_address = format!("0000:{:02x}:00.0", 4 * (n + 1)).parse().unwrap();
            // names of its own: the default layout's may be in use (the demo)
            pf.name = Some(format!("lb{}p0", n + 1));
            (pf.total_vfs, pf.num_vfs) = (256, 256);
            pf
        })
        .collect();
    layout
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("live_tree: needs root (links, FUSE); skipped");
        return;
    }
    let layout = layout();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let live = dir.path().join("live");
    sim::create(&CreateOptions {
        root: &plain,
        instance: "bplain",
        layout: &layout,
        serve: Serve::TreeOnly,
    })
    .unwrap();
    let started = Instant::now();
    let created = sim::create(&CreateOptions {
        root: &live,
        instance: "blive",
        layout: &layout,
        serve: Serve::Live {
            server: Path::new(env!("CARGO_BIN_EXE_sriovctl")),
        },
    });
    let created_in = started.elapsed();
    if let Err(e) = created {
        sim::destroy(&plain).unwrap();
        panic!("live node: {e}");
    }
    let loaded = config::parse(
        r#"{"resourceList":[{"resourceName":"all_vfs","selectors":{"devices":["1889"]}}]}"#,
        "intel.com",
    )
    .unwrap();
    let discover = |root: &Path| {
        let sysfs = SysfsRoot::new(root);
        let start = Instant::now();
        let devices = pool::discover_for(&sysfs, &loaded.config).unwrap();
        let pools = pool::build(&loaded.config, devices, &[]);
        let elapsed = start.elapsed();
        assert_eq!(pools.pools[0].devices.len(), 4096);
        elapsed
    };
    let first_live = discover(&live);
    let runs = 20;
    let (mut plain_times, mut live_times) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain_times.push(discover(&plain));
        live_times.push(discover(&live));
    }
    let plain_median = median(plain_times);
    let live_median = median(live_times);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| discovery of 4096 VFs, {runs} runs | median | vs plain files |");
    println!("|---|---|---|");
    println!(
        "| plain files (tree only) | {:.1} ms | 1.00x |",
        ms(plain_median)
    );
    println!(
        "| live tree, warm | {:.1} ms | {:.2}x |",
        ms(live_median),
        live_median.as_secs_f64() / plain_median.as_secs_f64()
    );
    println!(
        "| live tree, first read after create | {:.1} ms | {:.2}x |",
        ms(first_live),
        first_live.as_secs_f64() / plain_median.as_secs_f64()
    );
    println!();
    println!(
        "(creating the live node, 4112 veth pairs and the mount: {:.1} s)",
        created_in.as_secs_f64()
    );
    sim::destroy(&live).unwrap();
    sim::destroy(&plain).unwrap();
}
