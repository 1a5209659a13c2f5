//! `sriovctl` processes as the demo and end-to-end tests run them: the
//! stand-in kubelet and API server fed commands on stdin, their answers read
//! from stdout line by line.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn Error>>;

const LINE_TIMEOUT: Duration = Duration::from_secs(15);

/// A `sriovctl` process fed commands on stdin, its stdout read line by line.
pub struct Ctl {
    /// None once it ended.
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    name: &'static str,
}

impl Ctl {
    pub fn spawn(name: &'static str, args: &[&str]) -> Result<Self, Box<dyn Error>> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sriovctl"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Ctl {
            child: Some(child),
            stdin,
            lines,
            name,
        })
    }

    pub async fn line(&mut self) -> Result<String, Box<dyn Error>> {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.lines.recv())
            .await
            .map_err(|_| format!("{}: no line within {LINE_TIMEOUT:?}", self.name))?
            .ok_or_else(|| format!("{}: stdout closed", self.name))?;
        Ok(line)
    }

    /// Send `command`, read one line of answer.
    pub async fn ask(&mut self, command: &str) -> Result<String, Box<dyn Error>> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        self.line().await
    }

    /// Send `command` to `sriovctl kubelet-sim`, read every line of its
    /// answer: the lines before the `echo` marker sent after it.
    pub async fn ask_all(&mut self, command: &str) -> Result<Vec<String>, Box<dyn Error>> {
        const MARKER: &str = "-- answered --";
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}\necho {MARKER}")?;
        stdin.flush()?;
        let mut answer = Vec::new();
        loop {
            let line = self.line().await?;
            if line == MARKER {
                return Ok(answer);
            }
            answer.push(line);
        }
    }

    /// `quit`, and the process ends by itself.
    pub async fn quit(mut self) -> TestResult {
        if let Some(mut stdin) = self.stdin.take() {
            writeln!(stdin, "quit")?;
        }
        let mut child = self.child.take().ok_or("already ended")?;
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        assert!(status.success(), "{}: {status}", self.name);
        Ok(())
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        // a failed test leaves no process behind
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
