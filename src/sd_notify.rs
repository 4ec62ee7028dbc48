//! A tiny client for systemd's service notification protocol (`sd_notify(3)`).
//!
//! Owns: finding the notification socket (`$NOTIFY_SOCKET`, a filesystem path or, with a leading
//! `@`, a Linux abstract-namespace name), and sending `READY=1`, `WATCHDOG=1`, `STOPPING=1` and
//! `STATUS=...` datagrams over a std `UnixDatagram`. Also reads the watchdog period systemd
//! hands the service (`$WATCHDOG_USEC`, `$WATCHDOG_PID`).
//!
//! Must not: decide when the daemon is ready or healthy (the daemon does), spawn threads or keep
//! timers, or allocate per message: messages are built in a stack buffer. Outside systemd
//! (`$NOTIFY_SOCKET` unset) [`Notifier::from_env`] returns `None` and the daemon skips all this.
//!
//! Protocol: each datagram is newline-separated `KEY=VALUE` assignments
//! (systemd `sd_notify(3)`, "Description"; socket address rules in `sd_notify(3)`, "Notes").

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Longest `STATUS=` datagram built, in bytes; longer status text is cut at a UTF-8 boundary.
pub const MAX_MESSAGE_LEN_BYTES: usize = 512;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `Ok(None)` when the variable is unset or empty
    /// (not started by systemd, or a unit without `Type=notify`).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => Notifier::connect(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `socket`: an absolute path, or `@name` for the abstract
    /// namespace (sd_notify(3): "If the first character of $NOTIFY_SOCKET is '@', the string
    /// is understood as Linux abstract namespace socket").
    pub fn connect(socket: &OsStr) -> io::Result<Notifier> {
        let bytes = socket.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET must be an absolute path or start with '@'",
                ))
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// `READY=1`: start-up finished (for `Type=notify`, systemd starts dependants now).
    pub fn ready(&self) -> io::Result<()> {
        self.send(b"READY=1")
    }

    /// `WATCHDOG=1`: keep-alive; send at least every [`watchdog_period_us`] / 2.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(b"WATCHDOG=1")
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send(b"STOPPING=1")
    }

    /// `STATUS=<text>`, shown by `systemctl status`. A newline would start a new assignment,
    /// so each one is sent as a space; text past [`MAX_MESSAGE_LEN_BYTES`] is cut.
    pub fn status(&self, text: &str) -> io::Result<()> {
        let mut buf = [0u8; MAX_MESSAGE_LEN_BYTES];
        let len = status_message(text, &mut buf);
        self.send(&buf[..len])
    }

    /// Sends one raw datagram (one or more `KEY=VALUE` lines).
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        let sent = self.socket.send_to_addr(message, &self.addr)?;
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short datagram write to NOTIFY_SOCKET",
            ))
        }
    }
}

/// Writes `STATUS=<text>` into `buf` (newlines turned into spaces, cut at a UTF-8 boundary to
/// fit) and returns the length written.
fn status_message(text: &str, buf: &mut [u8; MAX_MESSAGE_LEN_BYTES]) -> usize {
    const KEY: &[u8] = b"STATUS=";
    buf[..KEY.len()].copy_from_slice(KEY);
    let room = buf.len() - KEY.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        // Terminates: index 0 is always a char boundary.
        end -= 1;
    }
    let out = &mut buf[KEY.len()..KEY.len() + end];
    out.copy_from_slice(&text.as_bytes()[..end]);
    for b in out.iter_mut() {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    KEY.len() + end
}

/// The watchdog period systemd expects (`WatchdogSec=`), in microseconds, if it applies to
/// this process: `$WATCHDOG_USEC` set and `$WATCHDOG_PID` unset or equal to our pid
/// (sd_watchdog_enabled(3)). Send [`Notifier::watchdog`] at half this period.
pub fn watchdog_period_us() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<u64> {
    let period_us: u64 = usec?.parse().ok().filter(|&us| us > 0)?;
    match pid {
        None => Some(period_us),
        Some(p) if p.parse::<u32>().ok() == Some(own_pid) => Some(period_us),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(server: &UnixDatagram) -> String {
        let mut buf = [0u8; 1024];
        let n = server.recv(&mut buf).expect("datagram arrives");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8 message")
    }

    #[test]
    fn sends_to_a_filesystem_socket() {
        let dir = std::env::temp_dir().join(format!("rillcast-sdnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind temp socket");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");

        let n = Notifier::connect(path.as_os_str()).expect("connect");
        n.ready().expect("send");
        assert_eq!(recv(&server), "READY=1");
        n.watchdog().expect("send");
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.status("streaming: 2 viewers\nrtsp ok").expect("send");
        assert_eq!(recv(&server), "STATUS=streaming: 2 viewers rtsp ok");
        n.stopping().expect("send");
        assert_eq!(recv(&server), "STOPPING=1");

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("rillcast-sdnotify-test-{}", std::process::id());
        let server_addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
        let server = UnixDatagram::bind_addr(&server_addr).expect("bind abstract socket");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");

        let env_value = format!("@{name}");
        let n = Notifier::connect(OsStr::new(&env_value)).expect("connect");
        n.ready().expect("send");
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn rejects_relative_and_empty_socket_names() {
        for bad in ["", "notify.sock"] {
            let err = Notifier::connect(OsStr::new(bad)).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let n = Notifier::connect(OsStr::new("/nonexistent/rillcast/notify")).expect("addr ok");
        assert!(n.ready().is_err());
    }

    #[test]
    fn long_status_is_cut_at_a_char_boundary() {
        let mut buf = [0u8; MAX_MESSAGE_LEN_BYTES];
        // 'é' is 2 bytes; 600 of them cannot fit in 512 - 7 = 505 bytes: 252 fit (504 bytes).
        let text = "é".repeat(600);
        let len = status_message(&text, &mut buf);
        assert_eq!(len, 7 + 504);
        let msg = std::str::from_utf8(&buf[..len]).expect("valid utf-8 after cut");
        assert!(msg.starts_with("STATUS=éé"));
    }

    #[test]
    fn watchdog_period_follows_sd_watchdog_enabled_rules() {
        assert_eq!(parse_watchdog(None, None, 7), None);
        assert_eq!(parse_watchdog(Some("30000000"), None, 7), Some(30_000_000));
        assert_eq!(
            parse_watchdog(Some("30000000"), Some("7"), 7),
            Some(30_000_000)
        );
        assert_eq!(parse_watchdog(Some("30000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("abc"), None, 7), None);
    }
}
