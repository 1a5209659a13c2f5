//! Running a freshly installed CNI plugin the way a runtime would ask it for
//! its versions: `CNI_COMMAND=VERSION`, config on stdin, JSON on stdout.

use super::InstallCniError;
use serde::Deserialize;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Output kept from each stream; a VERSION answer is a few hundred bytes.
const OUTPUT_CAP: u64 = 64 * 1024;
/// How much of the output an error message quotes.
const QUOTE_CAP: usize = 400;

#[derive(Deserialize)]
struct VersionResult {
    #[serde(rename = "supportedVersions")]
    supported_versions: Vec<String>,
}

/// Run `path` with `CNI_COMMAND=VERSION`; return its `supportedVersions`,
/// which must contain `wanted`.
pub(super) fn verify(
    path: &Path,
    wanted: &'static str,
    timeout: Duration,
) -> Result<Vec<String>, InstallCniError> {
    let deadline = Instant::now() + timeout;
    let mut child = spawn(path, deadline)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading stdin; its answer is what counts.
        let _ = stdin.write_all(format!(r#"{{"cniVersion":"{wanted}"}}"#).as_bytes());
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());

    let Some(status) =
        wait_until(&mut child, deadline).map_err(|source| InstallCniError::VerifySpawn {
            path: path.to_path_buf(),
            source,
        })?
    else {
        return Err(InstallCniError::VerifyTimeout {
            path: path.to_path_buf(),
            timeout,
        });
    };
    // The plugin has exited; a grandchild could still hold the pipes open,
    // so the readers get a short grace period, not an unbounded join.
    let stdout = stdout
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let stderr = stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();

    if !status.success() {
        let mut output = String::from_utf8_lossy(&stdout).trim().to_string();
        let err = String::from_utf8_lossy(&stderr);
        if !err.trim().is_empty() {
            output = format!("{output} {}", err.trim()).trim().to_string();
        }
        return Err(InstallCniError::VerifyFailed {
            path: path.to_path_buf(),
            status: status.to_string(),
            output: quote(&output),
        });
    }
    let result: VersionResult =
        serde_json::from_slice(&stdout).map_err(|e| InstallCniError::VerifyNotCni {
            path: path.to_path_buf(),
            reason: e.to_string(),
            output: quote(&String::from_utf8_lossy(&stdout)),
        })?;
    if !result.supported_versions.iter().any(|v| v == wanted) {
        return Err(InstallCniError::VerifyUnsupported {
            path: path.to_path_buf(),
            wanted,
            supported: result.supported_versions,
        });
    }
    Ok(result.supported_versions)
}

/// Start the plugin with only the variables a runtime would set for VERSION
/// (plus PATH, for plugins that are scripts), so nothing CNI_* leaks in from
/// the installer's environment.
fn spawn(path: &Path, deadline: Instant) -> Result<Child, InstallCniError> {
    loop {
        let mut command = Command::new(path);
        command
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(search) = std::env::var_os("PATH") {
            command.env("PATH", search);
        }
        match command.spawn() {
            Ok(child) => return Ok(child),
            // ETXTBSY: another thread of this process forked while our file
            // was still open for writing, and its child has not exec'd yet.
            // It clears within milliseconds.
            Err(e)
                if e.kind() == io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(InstallCniError::VerifySpawn {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Read a stream to its end (capped) on a thread; the result arrives on the
/// returned channel.
fn collect(stream: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(stream) = stream {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stream.take(OUTPUT_CAP).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// Wait for the child until `deadline`; on timeout kill and reap it, None.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn quote(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(no output)".to_string();
    }
    match text.char_indices().nth(QUOTE_CAP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
