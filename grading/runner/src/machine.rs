//! A running QEMU with its console on pipes: send bytes, expect text with a
//! timeout, ask QMP about the hardware, wait for exit. Dropping a machine
//! kills QEMU and removes its scratch directory, so a failed check leaves
//! nothing behind.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::qemu::{ConsoleMode, QemuConfig};
use crate::qmp::Qmp;

/// Default patience for console output.
pub const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// A booted QEMU under the runner's control.
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Shared,
    /// Console bytes before this have been matched already.
    cursor: usize,
    qmp: Qmp,
    dir: PathBuf,
    exit: Option<ExitStatus>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("pid", &self.child.id()).field("cursor", &self.cursor).finish()
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Machine {
    /// Starts QEMU paused, connects to its QMP socket and lets the machine
    /// run. Nothing is awaited on the console yet, so a check can type ahead
    /// of the boot.
    pub fn boot(config: &QemuConfig) -> Result<Machine, String> {
        let dir = std::env::temp_dir().join(format!(
            "aos-grading-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let qmp_path = dir.join("qmp.sock");
        let mut cmd = config.command(&ConsoleMode::Piped { qmp: qmp_path.clone() })?;
        let stderr = std::fs::File::create(dir.join("stderr")).map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| format!("starting qemu-system-aarch64: {e}"))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let out: Shared = Arc::default();
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*sink;
                let mut o = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    o.closed = true;
                } else {
                    o.bytes.extend_from_slice(&buf[..n]);
                }
                cv.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let qmp = match Qmp::connect(&qmp_path, Duration::from_secs(10))
            .and_then(|mut q| q.execute("cont", serde_json::json!({})).map(|_| q))
        {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("{e}\nQEMU stderr:\n{log}"));
            }
        };
        Ok(Machine { child, stdin, out, cursor: 0, qmp, dir, exit: None })
    }

    /// Sends raw bytes to the console.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("console input is closed")?;
        stdin.write_all(bytes).and_then(|_| stdin.flush()).map_err(|e| format!("console write failed: {e}"))
    }

    /// Types a line and presses Enter (CR, as a terminal sends it).
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        self.send(line.as_bytes())?;
        self.send(b"\r")
    }

    /// Waits for `needle` after the cursor; returns the text between the
    /// cursor and the match (CRs removed) and moves the cursor past it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.out;
        let mut o = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(pos) = find(&o.bytes[self.cursor..], needle.as_bytes()) {
                let text = clean(&o.bytes[self.cursor..self.cursor + pos]);
                self.cursor += pos + needle.len();
                return Ok(text);
            }
            let now = Instant::now();
            if o.closed || now >= deadline {
                let seen = clean(&o.bytes[self.cursor..]);
                let why = if o.closed { "QEMU exited" } else { "timed out" };
                return Err(format!(
                    "{why} waiting for {needle:?} after {timeout:?}; console since last match:\n{seen}"
                ));
            }
            o = cv.wait_timeout(o, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Like [`expect`](Self::expect) but does not wait.
    pub fn seen(&mut self, needle: &str) -> Option<String> {
        self.expect(needle, Duration::ZERO).ok()
    }

    /// Everything the console printed so far (CRs removed).
    pub fn transcript(&self) -> String {
        let o = self.out.0.lock().unwrap_or_else(|p| p.into_inner());
        clean(&o.bytes)
    }

    /// Waits for `prompt`; the text before it is returned.
    pub fn prompt(&mut self, prompt: &str) -> Result<String, String> {
        self.expect(prompt, TIMEOUT)
    }

    /// Types `line`, waits for its echo and the next `prompt`, and returns
    /// what the command printed in between.
    pub fn run(&mut self, line: &str, prompt: &str) -> Result<String, String> {
        self.send_line(line)?;
        let echo = format!("{line}\n");
        let echoed = self.expect("\n", TIMEOUT)?;
        if format!("{echoed}\n") != echo {
            return Err(format!("typed {line:?} but the console echoed {echoed:?}"));
        }
        self.prompt(prompt)
    }

    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// Waits for QEMU to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit {
                return Ok(s);
            }
            match self.child.try_wait() {
                Ok(Some(s)) => self.exit = Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!("QEMU still running after {timeout:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        }
    }

    /// Whether QEMU is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\r', "")
}
