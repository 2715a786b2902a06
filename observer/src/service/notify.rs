//! systemd's notification protocol (`Type=notify`): READY=1 once the capture is attached,
//! RELOADING=1 and STOPPING=1, and the reason when the recorder fails (STATUS=, ERRNO=), sent to
//! `$NOTIFY_SOCKET`. A no-op outside systemd.

use crate::capture::monotonic_ns;
use crate::escape::sanitize_text;

/// Tells systemd (Type=notify) how the service is doing; a no-op outside systemd.
pub(crate) fn sd_notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        sd_notify_to(&path, state);
    }
}

/// Tells systemd why the recorder is failing: `STATUS=` with the one-line error (what
/// `systemctl status` shows), and `ERRNO=` when the cause is a system error.
pub(crate) fn sd_notify_failure(e: &anyhow::Error) {
    sd_notify(&failure_message(e));
}

fn failure_message(e: &anyhow::Error) -> String {
    // One line, nothing raw: a newline would start another assignment of the protocol.
    let mut msg = format!("STATUS=failed: {}", sanitize_text(&format!("{e:#}")));
    if let Some(n) = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>()?.raw_os_error())
    {
        msg.push_str(&format!("\nERRNO={n}"));
    }
    msg
}

fn sd_notify_to(path: &std::ffi::OsStr, state: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_encoded_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    } else {
        SocketAddr::from_pathname(std::path::Path::new(path))
    };
    let r = addr.and_then(|a| {
        let s = UnixDatagram::unbound()?;
        let msg = if state == "RELOADING=1" {
            // Type=notify-reload wants the time of the reload request.
            format!("{state}\nMONOTONIC_USEC={}", monotonic_ns() / 1000)
        } else {
            state.to_string()
        };
        s.send_to_addr(msg.as_bytes(), &a)
    });
    if let Err(e) = r {
        log::debug!("sd_notify {state}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_notify_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("observer-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("sock");
        let _ = std::fs::remove_file(&p);
        let s = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        sd_notify_to(p.as_os_str(), "READY=1");
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failure_is_one_status_line_with_its_errno() {
        let io = std::io::Error::from_raw_os_error(libc::EPERM);
        let e = anyhow::Error::new(io).context("loading the program\nREADY=1");
        assert_eq!(
            failure_message(&e),
            "STATUS=failed: loading the program\\nREADY=1: Operation not permitted (os error 1)\nERRNO=1"
        );
        let e = anyhow::anyhow!("no such cgroup");
        assert_eq!(failure_message(&e), "STATUS=failed: no such cgroup");
    }
}
