//! The process that serves a live node: started detached by `create`,
//! found again by `destroy` through the pid in the state file, and its
//! mount recognised by type in `/proc/self/mountinfo`.

use super::live::{FS_SUBTYPE, READY};
use super::SimError;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The server's log, in the root directory (under the mount while it runs).
pub const LOG_FILE: &str = "sriov-sim.log";

/// How long a server may take to wire and mount a node (256 VFs per PF
/// take a few seconds on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Start `<server> sim serve --sysfs-root <root>` in its own process group
/// (a terminal's Ctrl-C must not take the node down) and wait until it
/// says the tree answers. Its log goes to [`LOG_FILE`].
pub fn start(server: &Path, root: &Path) -> Result<(), SimError> {
    let io_error = |step: &'static str| {
        move |source| SimError::Io {
            path: root.to_owned(),
            step,
            source,
        }
    };
    let log_path = root.join(LOG_FILE);
    let log = std::fs::File::create(&log_path).map_err(io_error("create the server log"))?;
    let mut child = Command::new(server)
        .args(["sim", "serve", "--sysfs-root"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io_error("start the simulated node's server"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(SimError::Io {
            path: root.to_owned(),
            step: "read the server's output",
            source: std::io::ErrorKind::BrokenPipe.into(),
        });
    };
    // Read the ready line on a thread so a hung server cannot hang create.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(read.map(|_| line));
    });
    let outcome = receiver.recv_timeout(READY_TIMEOUT);
    match outcome {
        Ok(Ok(line)) if line.trim_end() == READY => Ok(()),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let why = match other {
                Err(_) => format!("no answer within {}s", READY_TIMEOUT.as_secs()),
                _ => "it exited".to_owned(),
            };
            Err(SimError::Server {
                why,
                log: log_tail(&log_path),
            })
        }
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Unmount every simulated-node mount at `root` (alive or with a dead
/// server). Lazy: a reader still inside cannot keep the node from going.
pub fn unmount(root: &Path) -> Result<(), String> {
    let target = absolute(root);
    while mounted_at(&target) {
        umount2(&target, MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmount {}: {e}", target.display()))?;
    }
    Ok(())
}

/// The path as mountinfo shows it: absolute, symlinks of its parents
/// resolved (the mount point itself may not answer a stat: a dead server).
fn absolute(root: &Path) -> PathBuf {
    let absolute = if root.is_absolute() {
        root.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(root)
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|parent| parent.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

fn mounted_at(target: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let mount_point = left.split(' ').nth(4).map(unescape);
        // "fuse sriov-sim" from a direct mount, "fuse.sriov-sim <src>" via fusermount
        let mut fields = right.split(' ');
        let (fs_type, source) = (fields.next(), fields.next());
        let ours = fs_type == Some(format!("fuse.{FS_SUBTYPE}").as_str())
            || (fs_type == Some("fuse") && source == Some(FS_SUBTYPE));
        ours && mount_point.as_deref() == Some(target.as_os_str().to_string_lossy().as_ref())
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if let Ok(code) = u8::from_str_radix(&digits, 8) {
                out.push(char::from(code));
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Stop the server `pid` if it is still the one serving `root` (a pid can
/// be reused): SIGTERM, then SIGKILL if it does not go.
pub fn stop(pid: u32, root: &Path) -> Result<(), String> {
    if !serves(pid, root) {
        return Ok(());
    }
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    let pid = Pid::from_raw(raw);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(50));
            return match alive(pid) {
                true => Err(format!("the node's server {pid} does not stop")),
                false => Ok(()),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Whether `pid` runs `... sim serve --sysfs-root <root>`, however either
/// side spelled the root (relative, through a symlinked parent).
fn serves(pid: u32, root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if !args
        .windows(2)
        .any(|w| w == [b"sim".as_slice(), b"serve".as_slice()])
    {
        return false;
    }
    let Some(served) = args
        .windows(2)
        .find(|w| w[0] == b"--sysfs-root".as_slice())
        .map(|w| Path::new(std::ffi::OsStr::from_bytes(w[1])))
    else {
        return false;
    };
    // a relative root is relative to the server's working directory
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    absolute(&cwd.join(served)) == absolute(root)
}

/// Running, not a zombie waiting for its parent.
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state follows the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
