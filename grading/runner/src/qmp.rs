//! A QMP client (QEMU Machine Protocol, JSON lines over a Unix socket): the
//! runner's view of the machine from outside the guest. It reads device
//! registers with the human monitor's `xp` and collects events (`RESET`,
//! `SHUTDOWN`) that say what the machine did, whatever the guest printed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    /// Connects, retrying until QEMU has created the socket, and leaves
    /// capability negotiation done.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > timeout => {
                    return Err(format!("QMP socket {} not ready after {timeout:?}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer, events: Vec::new() };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("QMP connection closed (QEMU exited?)".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("bad QMP message {line:?}: {e}")),
            Err(e) => Err(format!("QMP read failed: {e}")),
        }
    }

    /// Runs a QMP command; events that arrive meanwhile are kept.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| format!("QMP write failed: {e}"))?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = reply.get("error") {
                return Err(format!("QMP {command} failed: {e}"));
            }
        }
    }

    /// Runs a human-monitor command and returns its text.
    pub fn hmp(&mut self, command_line: &str) -> Result<String, String> {
        let r = self.execute("human-monitor-command", json!({ "command-line": command_line }))?;
        r.as_str().map(str::to_owned).ok_or_else(|| format!("HMP {command_line:?} returned {r}"))
    }

    /// Reads a 32-bit word of guest physical memory (device registers
    /// included), as the bus sees it.
    pub fn read_u32(&mut self, addr: u64) -> Result<u32, String> {
        let text = self.hmp(&format!("xp /1wx {addr:#x}"))?;
        parse_xp(&text).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| format!("cannot parse xp output {text:?}"))
    }

    /// A little-endian 64-bit word of guest physical memory, in one round
    /// trip.
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, String> {
        let text = self.hmp(&format!("xp /1gx {addr:#x}"))?;
        parse_xp(&text).ok_or_else(|| format!("cannot parse xp output {text:?}"))
    }

    /// Names of the events seen so far (after a round trip, so events the
    /// machine raised before this call are included).
    pub fn event_names(&mut self) -> Result<Vec<String>, String> {
        self.execute("query-status", json!({}))?;
        Ok(self.events.iter().filter_map(|e| e["event"].as_str().map(str::to_owned)).collect())
    }
}

/// Parses `xp /1wx` output: "0000000009030004: 0x00000001".
fn parse_xp(text: &str) -> Option<u64> {
    let value = text.trim().rsplit(": ").next()?;
    u64::from_str_radix(value.trim().strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xp_lines() {
        assert_eq!(parse_xp("0000000009030004: 0x00000001\r\n"), Some(1));
        assert_eq!(parse_xp("0000000030220000: 0xdeadbeef\r\n"), Some(0xdead_beef));
        assert_eq!(parse_xp("0000000040000000: 0x9a7e000000000008\r\n"), Some(0x9a7e_0000_0000_0008));
        assert_eq!(parse_xp("Cannot access memory\r\n"), None);
    }
}
