//! Ports for tests that no other test process, and no outbound connection, takes.
//!
//! `bind("127.0.0.1:0")` then release hands out a port from the kernel's ephemeral
//! range, which is also where every outbound connection's local port comes from, and
//! where a test binary running beside this one draws its own: between the release and
//! the server's bind, another process can take it ("Address already in use"). Here a
//! port comes from below the ephemeral range, and is reserved for this process's life by
//! an exclusive lock on `<tmp>/persys-test-ports/<port>.lock` (released by the kernel
//! when the process ends, however it ends), so parallel suites never share one.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

/// Lower bound of the ports handed out (above the well-known and registered ports
/// most local services use).
const FLOOR: u16 = 15_000;

/// Locks held for the life of the process (a dropped lock frees its port).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// The kernel's ephemeral range, or Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// The range ports are taken from: below the ephemeral range when there is room.
fn range() -> (u16, u16) {
    let (low, high) = ephemeral_range();
    if low > FLOOR + 1_000 {
        (FLOOR, low)
    } else {
        // The ephemeral range starts too low to leave room: take ports above it.
        (high.saturating_add(1).max(FLOOR), u16::MAX)
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("persys-test-ports")
}

/// A random start, so processes that start together do not walk the same ports.
fn start_offset(span: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span
}

/// Reserve `port` for this process: its lock file is ours and nothing listens on it.
fn try_reserve(port: u16) -> Option<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir().join(format!("{port}.lock")))
        .ok()?;
    // Locks are per open file: a second reservation of the same port by this process
    // fails too, so one process never hands a port out twice.
    file.try_lock().ok()?;
    TcpListener::bind(("127.0.0.1", port)).ok()?;
    Some(file)
}

/// A TCP port on 127.0.0.1 that is free now and that no other caller of this function,
/// in this process or any other, gets while this process lives.
///
/// # Panics
/// When no port of the range can be reserved (a test cannot run without one).
pub fn free_port() -> u16 {
    // A failure here shows up as "no port could be reserved" below.
    let _ = std::fs::create_dir_all(lock_dir());
    let (low, high) = range();
    let span = u32::from(high - low);
    let offset = start_offset(span);
    for i in 0..span {
        let port = low + ((offset + i) % span) as u16;
        if let Some(lock) = try_reserve(port) {
            match HELD.lock() {
                Ok(mut held) => held.push(lock),
                Err(poisoned) => poisoned.into_inner().push(lock),
            }
            return port;
        }
    }
    panic!(
        "no port in {low}..{high} could be reserved under {}",
        lock_dir().display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_unique_outside_the_ephemeral_range_and_bindable() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        for p in &ports {
            assert!(!(low..=high).contains(p), "{p} is in the ephemeral range");
            assert!(TcpListener::bind(("127.0.0.1", *p)).is_ok(), "{p} not free");
        }
    }

    #[test]
    fn a_port_reserved_by_this_process_cannot_be_reserved_again() {
        let port = free_port();
        assert!(try_reserve(port).is_none());
    }
}
