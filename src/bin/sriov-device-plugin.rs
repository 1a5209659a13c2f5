//! The device plugin daemon: flags, logging, signals; the work is in
//! `sriov_rs::deviceplugin`.

use clap::{Parser, ValueEnum};
use sriov_rs::deviceplugin::{
    CdiMode, Control, Daemon, NodePolicySource, RegistrationMode, Settings, DEFAULT_HELD_RECHECK,
    DEFAULT_VF_TIMEOUT,
};
use sriov_rs::dra::api::DraApi;
use sriov_rs::dra::names::is_driver_name;
use sriov_rs::dra::node_plugin::{ApiConnector, DraSettings};
use sriov_rs::dra::publisher::DEFAULT_REPUBLISH_EVERY;
use sriov_rs::kubelet_api::{
    DEFAULT_DEVICE_PLUGIN_DIR, DEFAULT_DRA_PLUGIN_DIR, DEFAULT_PLUGINS_REGISTRY_DIR,
    DEFAULT_POD_RESOURCES_SOCKET,
};
use sriov_rs::sysfs::SysfsRoot;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// plugins_registry if that directory exists, else kubelet.sock (upstream's rule)
    Auto,
    /// Register through kubelet.sock in --device-plugin-path
    KubeletSocket,
    /// Be found by the kubelet's plugin watcher in --plugins-registry-path
    PluginsRegistry,
}

#[derive(Debug, Parser)]
#[command(
    name = "sriov-device-plugin",
    version,
    about = "SR-IOV device plugin for the kubelet"
)]
struct Args {
    /// Resource pool config, sriov-network-device-plugin format
    #[arg(long, default_value = "/etc/pcidp/config.json")]
    config_file: PathBuf,
    /// Default prefix of resource names
    #[arg(long, default_value = "intel.com")]
    resource_prefix: String,
    /// Hand device nodes over through CDI (spec files in --cdi-spec-dir)
    #[arg(long)]
    use_cdi: bool,
    /// With --use-cdi: put CDI references in the Allocate response's cdi_devices
    /// field (kubelet >= 1.28) instead of upstream's cdi.k8s.io annotation
    #[arg(long, requires = "use_cdi")]
    cdi_devices_field: bool,
    #[arg(long, default_value = "/var/run/cdi")]
    cdi_spec_dir: PathBuf,
    /// The kubelet's device plugin directory (kubelet.sock, our sockets)
    #[arg(long, default_value = DEFAULT_DEVICE_PLUGIN_DIR)]
    device_plugin_path: PathBuf,
    /// The kubelet plugin watcher's directory
    #[arg(long, default_value = DEFAULT_PLUGINS_REGISTRY_DIR)]
    plugins_registry_path: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    registration_mode: Mode,
    /// Where device-info files for the CNI are written
    #[arg(long, default_value = "/var/run/k8s.cni.cncf.io/devinfo/dp")]
    devinfo_dir: PathBuf,
    /// sysfs tree to read (also SRIOV_SYSFS_ROOT)
    #[arg(long, env = sriov_rs::sysfs::ENV_SYSFS_ROOT)]
    sysfs_root: Option<PathBuf>,
    /// Serve /healthz (liveness), /readyz (every pool registered) and
    /// /metrics (Prometheus) over HTTP on this address, e.g. 127.0.0.1:8096;
    /// off unless given
    #[arg(long, value_name = "ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// With --health-addr: read the VF counters for /metrics this often
    /// (seconds; a scrape shows the last read)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    vf_counters_interval: u64,
    /// The kubelet's PodResources socket, asked which devices pods hold so
    /// that a reload never drops or moves one in use; "" turns this off
    // a String, not a PathBuf: clap refuses an empty path
    #[arg(long, default_value = DEFAULT_POD_RESOURCES_SOCKET)]
    pod_resources_socket: String,
    /// Do not watch the config file's directory; reload on SIGHUP only
    #[arg(long)]
    no_config_watch: bool,
    /// Do not mark devices Unhealthy when their PF loses carrier (pools can
    /// also opt out one by one with "linkHealth": false)
    #[arg(long)]
    no_link_health: bool,
    /// Rescan the node this often (seconds) whatever events said: the
    /// safety net for lost kernel events; 0 turns it off
    #[arg(long, default_value_t = 60)]
    rescan_interval: u64,
    /// Provision VFs from this node policy (YAML or JSON; see
    /// docs/provision.md) before serving, and again when it changes
    #[arg(long, value_name = "FILE")]
    node_policy: Option<PathBuf>,
    /// With --node-policy: a missing file means no policy (an optional
    /// ConfigMap that does not exist) instead of an error
    #[arg(long, requires = "node_policy")]
    node_policy_optional: bool,
    /// With --node-policy: how long to wait (seconds) for VFs and their
    /// drivers after sriov_numvfs
    #[arg(long, default_value_t = DEFAULT_VF_TIMEOUT.as_secs())]
    vf_timeout: u64,
    /// Root under which /dev nodes (vhost-net, tun, rdma_cm) are looked up;
    /// in a container, where the node's /dev is mounted (e.g. /host)
    #[arg(long, default_value = "/")]
    dev_root: PathBuf,
    /// The DRA driver name (a DNS subdomain of at most 63 characters) for
    /// pools with "allocationApi": "dra"; see docs/dra.md before changing it
    #[arg(long, default_value = sriov_rs::dra::DEFAULT_DRIVER_NAME)]
    dra_driver_name: String,
    /// The kubelet's DRA plugin directory: <dir>/<driver>/dra.sock and the
    /// prepared-claims checkpoint
    #[arg(long, default_value = DEFAULT_DRA_PLUGIN_DIR)]
    dra_plugin_path: PathBuf,
    /// This node's name, which owns the ResourceSlices (DRA pools only)
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Kubeconfig for the API server (DRA pools only); default: in-cluster
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace) or upstream's numeric
    /// glog level (0-2 info, 3 and up debug); RUST_LOG overrides it
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Accepted for upstream compatibility (its image passes --log-dir); we
    /// always log to stderr, which is what `kubectl logs` shows
    #[arg(long, hide = true)]
    log_dir: Option<String>,
    /// glog's verbosity, as upstream's binary takes it
    #[arg(short = 'v', hide = true)]
    v: Option<u32>,
    // glog's other flags, accepted and ignored so existing DaemonSets start:
    // we always log to stderr.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    logtostderr: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    alsologtostderr: Option<String>,
    #[arg(long = "log_dir", hide = true)]
    glog_log_dir: Option<String>,
    #[arg(long, hide = true)]
    stderrthreshold: Option<String>,
    #[arg(long, hide = true)]
    vmodule: Option<String>,
    #[arg(long = "log_backtrace_at", hide = true)]
    log_backtrace_at: Option<String>,
}

/// Go's flag package takes `-config-file` as well as `--config-file`;
/// existing DaemonSets use both, so turn single-dash long flags into double.
fn go_style_args() -> Vec<String> {
    std::env::args()
        .enumerate()
        .map(|(i, arg)| {
            // `-v` / `-v=5` stay glog's short verbosity flag
            let glog_v = arg == "-v" || arg.starts_with("-v=");
            let single_dash_long =
                i > 0 && arg.starts_with('-') && !arg.starts_with("--") && arg.len() > 2 && !glog_v;
            if single_dash_long {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

fn log_filter(level: &str, v: Option<u32>) -> String {
    let numeric = v.or_else(|| level.parse().ok());
    match numeric {
        Some(n) if n >= 3 => "debug".into(),
        Some(_) => "info".into(),
        None => level.into(),
    }
}

async fn forward_signals(control: mpsc::Sender<Control>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let command = tokio::select! {
            _ = term.recv() => Control::Shutdown,
            _ = int.recv() => Control::Shutdown,
            _ = quit.recv() => Control::Shutdown,
            _ = hup.recv() => Control::Reload,
        };
        tracing::info!(?command, "signal received");
        if control.send(command).await.is_err() || command == Control::Shutdown {
            return Ok(());
        }
    }
}

/// The API server, reached only once the config has a DRA pool.
async fn connect_kube(kubeconfig: Option<&Path>) -> Result<Arc<dyn DraApi>, String> {
    sriov_rs::dra::kube_api::connect(kubeconfig)
        .await
        .map_err(|error| error.to_string())
}

fn main() {
    let args = Args::parse_from(go_style_args());
    sriov_rs::logging::init(&log_filter(&args.log_level, args.v));
    if !is_driver_name(&args.dra_driver_name) {
        eprintln!(
            "sriov-device-plugin: --dra-driver-name {:?} is not a DNS subdomain of at most 63 characters",
            args.dra_driver_name
        );
        std::process::exit(1);
    }
    // built only when the config has a DRA pool: a daemon without one
    // needs no API server and no RBAC
    let kubeconfig = args.kubeconfig.clone();
    let api = ApiConnector::new(move || {
        let kubeconfig = kubeconfig.clone();
        Box::pin(async move { connect_kube(kubeconfig.as_deref()).await })
    });
    let settings = Settings {
        config_file: args.config_file,
        resource_prefix: args.resource_prefix,
        sysfs: SysfsRoot::resolve(args.sysfs_root.as_deref()),
        dev_root: args.dev_root,
        device_plugin_dir: args.device_plugin_path,
        plugins_registry_dir: args.plugins_registry_path,
        registration: match args.registration_mode {
            Mode::Auto => RegistrationMode::Auto,
            Mode::KubeletSocket => RegistrationMode::KubeletSocket,
            Mode::PluginsRegistry => RegistrationMode::PluginsRegistry,
        },
        devinfo_dir: args.devinfo_dir,
        cdi: match (args.use_cdi, args.cdi_devices_field) {
            (false, _) => CdiMode::Off,
            (true, false) => CdiMode::Annotation,
            (true, true) => CdiMode::Field,
        },
        cdi_spec_dir: args.cdi_spec_dir,
        default_route_netdevs: None,
        health_addr: args.health_addr,
        pod_resources_socket: (!args.pod_resources_socket.is_empty())
            .then(|| PathBuf::from(args.pod_resources_socket)),
        held_recheck: DEFAULT_HELD_RECHECK,
        watch_config: !args.no_config_watch,
        watch_node: true,
        link_health: !args.no_link_health,
        rescan_interval: (args.rescan_interval > 0)
            .then(|| std::time::Duration::from_secs(args.rescan_interval)),
        node_policy: args.node_policy.map(|path| NodePolicySource {
            path,
            missing_is_empty: args.node_policy_optional,
            vf_timeout: std::time::Duration::from_secs(args.vf_timeout),
        }),
        vf_counters_interval: std::time::Duration::from_secs(args.vf_counters_interval),
        dra: Some(DraSettings {
            driver: args.dra_driver_name,
            node: args.node_name,
            plugin_dir: args.dra_plugin_path,
            api,
            republish_every: Some(DEFAULT_REPUBLISH_EVERY),
        }),
    };
    // One thread: a handful of sockets and timers; keeps the footprint small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sriov-device-plugin: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        let (control, commands) = mpsc::channel(8);
        // Signals are hooked before anything is created, so a SIGTERM during
        // start-up still ends in a clean shutdown.
        let signals = tokio::spawn(forward_signals(control));
        let daemon = match Daemon::start(settings).await {
            Ok(daemon) => daemon,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return 1;
            }
        };
        daemon.run(commands).await;
        signals.abort();
        0
    });
    std::process::exit(code);
}
