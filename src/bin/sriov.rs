//! The `sriov` CNI plugin: named `sriov` so NADs with `"type": "sriov"` find it.
//! stdout carries only the result or the CNI error; logs go to stderr or `logFile`.

use std::io::Write;

fn main() {
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == sriov_rs::cni::ipam::TIED_EXEC_ARG)
    {
        // we were started by ourselves to launch an IPAM plugin
        std::process::exit(sriov_rs::cni::ipam::exec_tied_to_parent(args));
    }
    sriov_rs::cni::ipam::enable_launcher();
    let mut stdin = std::io::stdin();
    let (output, code) = match sriov_rs::cni::run_from_env(&mut stdin) {
        Ok(result) => (result, 0),
        Err(error) => {
            tracing::error!(code = error.code, error = %error.msg, details = %error.details, "CNI command failed");
            (Some(error.to_json()), 1)
        }
    };
    if let Some(output) = output {
        let mut stdout = std::io::stdout().lock();
        // Nothing sensible is left to do if stdout is gone; the exit code still tells.
        let _ = writeln!(stdout, "{output}");
        let _ = stdout.flush();
    }
    std::process::exit(code);
}
