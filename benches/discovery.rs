//! Discovery + pool assignment of 8 PFs x 256 VFs on a simulated tree,
//! in-process (no exec, no output formatting), with a baseline measured in
//! the same run: reading the same `bus/pci/devices` entries' `vendor` files,
//! the least any discovery must do. Three ways: what the daemon reads for
//! its config (VFs on as many threads as the scan uses), the same on one
//! thread, and every fact (what `sriovctl inventory` reads).
//! Run: `cargo bench --bench discovery`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a panic is the report

use sriov_rs::config;
use sriov_rs::devtools::sim::{self, layout::Layout, CreateOptions, Serve};
use sriov_rs::pool;
use sriov_rs::sysfs::{ScanOptions, SysfsRoot};
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut layout = Layout::default_layout().unwrap();
    let template = layout.pfs[0].clone();
    layout.pfs = (0..8)
        .map(|n| {
            let mut pf = template.clone();
            pf.pci_address = format!("0000:{:02x}:00.0", 0x10 * (n + 1)).parse().unwrap();
            pf.name = Some(format!("ens{}f0", n + 1));
            (pf.total_vfs, pf.num_vfs) = (256, 256);
            pf
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    sim::create(&CreateOptions {
        root: &root,
        instance: "bench",
        layout: &layout,
        serve: Serve::TreeOnly,
    })
    .unwrap();
    let sysfs = SysfsRoot::new(&root);
    let loaded = config::parse(
        r#"{"resourceList":[{"resourceName":"all_vfs","selectors":{"devices":["1889"]}}]}"#,
        "intel.com",
    )
    .unwrap();

    let runs = 30;
    let one_thread = ScanOptions {
        max_threads: 1,
        ..pool::scan_options(&loaded.config)
    };
    let cases: [(&str, &dyn Fn() -> Vec<pool::Discovered>); 3] = [
        ("discover_for + pool (the daemon's path)", &|| {
            pool::discover_for(&sysfs, &loaded.config).unwrap()
        }),
        ("same, VFs read on one thread", &|| {
            pool::discover_with(&sysfs, &one_thread).unwrap()
        }),
        ("discover (every fact: inventory) + pool", &|| {
            pool::discover(&sysfs).unwrap()
        }),
    ];
    let mut baseline = Vec::new();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..runs {
        let start = Instant::now();
        let mut read = 0;
        for address in sysfs.pci_addresses().unwrap() {
            read += std::fs::read(sysfs.device_dir(address).join("vendor"))
                .unwrap()
                .len();
        }
        assert!(read > 0);
        baseline.push(start.elapsed());

        for ((_, discover), times) in cases.iter().zip(&mut samples) {
            let start = Instant::now();
            let devices = discover();
            let pools = pool::build(&loaded.config, devices, &[]);
            times.push(start.elapsed());
            assert_eq!(pools.pools[0].devices.len(), 2048);
        }
    }
    let baseline = median(baseline);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("| {runs} runs, 2056 functions, {cores} cores | median | vs baseline |");
    println!("|---|---|---|");
    println!(
        "| baseline: list + read one attribute per function | {:.1} ms | 1.00x |",
        baseline.as_secs_f64() * 1e3
    );
    for ((name, _), times) in cases.iter().zip(samples) {
        let median = median(times);
        println!(
            "| {name} | {:.1} ms | {:.2}x |",
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    sim::destroy(&root).unwrap();
}
