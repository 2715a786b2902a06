//! Stage 1, what the kernel reports: a ring-buffer record decoded ([`Sighting`]), the kernel's
//! own counters ([`KernelStats`]), and the clock that dates both ([`Clock`]).

use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use bytes::{Buf, Bytes};
use observer_common::{AggKey, COMM_LEN, EVENT_HEADER_LEN, EventHeader};

/// A decoded ring-buffer record: the first failure of a key (or, when the aggregate was full, one
/// failure on its own), or a directory open.
#[derive(Clone, Debug)]
pub(crate) struct Sighting {
    pub(crate) hdr: EventHeader,
    /// The path as the process passed it; every later stage shares these bytes.
    pub(crate) path: Bytes,
}

impl Sighting {
    /// Decodes one record, checking its length first.
    pub(crate) fn decode(buf: &[u8]) -> Result<Sighting> {
        if buf.len() < EVENT_HEADER_LEN {
            bail!("short ring-buffer record: {} bytes", buf.len());
        }
        // The fields in `EventHeader`'s order (`#[repr(C)]`, no implicit padding), native-endian
        // as the kernel wrote them.
        let mut b = buf;
        let key = AggKey {
            path_hash: b.get_u64_ne(),
            tgid: b.get_u32_ne(),
            errno: b.get_u32_ne(),
            syscall: b.get_u32_ne(),
            dfd: b.get_i32_ne(),
            dir_gen: b.get_u32_ne(),
            _pad: b.get_u32_ne(),
        };
        let mut hdr = EventHeader {
            key,
            ts_ns: b.get_u64_ne(),
            flags: b.get_u64_ne(),
            aux: b.get_u64_ne(),
            cgroup_id: b.get_u64_ne(),
            tid: b.get_u32_ne(),
            uid: b.get_u32_ne(),
            gid: b.get_u32_ne(),
            path_len: b.get_u32_ne(),
            status: b.get_u32_ne(),
            mnt_ns: b.get_u32_ne(),
            aux_gen: b.get_u32_ne(),
            _pad: b.get_u32_ne(),
            comm: [0; COMM_LEN],
        };
        b.copy_to_slice(&mut hdr.comm);
        let len = hdr.path_len as usize;
        let path = b
            .get(..len)
            .ok_or_else(|| anyhow!("ring-buffer record shorter than its path length {len}"))?;
        Ok(Sighting {
            hdr,
            path: Bytes::copy_from_slice(path),
        })
    }

    pub(crate) fn comm(&self) -> String {
        let end = self
            .hdr
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.hdr.comm[..end]).into_owned()
    }
}

/// Kernel-side counters (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub lost: u64,
    pub overflow: u64,
    pub path_faults: u64,
    pub pids_full: u64,
    pub dirfd_lost: u64,
}

impl KernelStats {
    /// One warning per counter that limits what a report can say and has just become non-zero
    /// (each is said once; `lost` has its own messages).
    pub(crate) fn new_warnings(&self, before: &KernelStats) -> Vec<String> {
        let mut w = Vec::new();
        if self.pids_full > 0 && before.pids_full == 0 {
            w.push(format!(
                "the --pid map is full: {} new descendant(s) are not followed, and their failures \
                 are not seen",
                self.pids_full
            ));
        }
        if self.dirfd_lost > 0 && before.dirfd_lost == 0 {
            w.push(format!(
                "the ring buffer was full: {} directory open(s) lost; failures relative to those \
                 directories may stay unresolved",
                self.dirfd_lost
            ));
        }
        if self.path_faults > 0 && before.path_faults == 0 {
            w.push(format!(
                "{} failing call(s) passed a path pointer the kernel could not read; they are \
                 counted without a path",
                self.path_faults
            ));
        }
        w
    }
}

/// Converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    mono_ns: u64,
    wall: SystemTime,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        Clock {
            mono_ns: monotonic_ns(),
            wall: SystemTime::now(),
        }
    }

    /// A fixed pairing, for tests.
    #[cfg(test)]
    pub(crate) fn fixed(mono_ns: u64, wall: SystemTime) -> Clock {
        Clock { mono_ns, wall }
    }

    pub(crate) fn wall(&self, mono_ns: u64) -> SystemTime {
        if mono_ns >= self.mono_ns {
            self.wall + Duration::from_nanos(mono_ns - self.mono_ns)
        } else {
            self.wall
                .checked_sub(Duration::from_nanos(self.mono_ns - mono_ns))
                .unwrap_or(self.wall)
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the kernel's timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_counter_warnings_are_said_once_each() {
        let zero = KernelStats::default();
        let one = KernelStats {
            pids_full: 2,
            dirfd_lost: 1,
            path_faults: 3,
            ..zero
        };
        let w = one.new_warnings(&zero);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("2 new descendant(s)"), "{w:?}");
        let more = KernelStats {
            pids_full: 5,
            ..one
        };
        assert!(more.new_warnings(&one).is_empty());
        assert!(zero.new_warnings(&zero).is_empty());
    }

    #[test]
    fn decode_checks_lengths() {
        assert!(Sighting::decode(&[0u8; 10]).is_err());
        // path_len sits at offset 32 + 4 * 8 + 12 = 76.
        let mut buf = vec![0u8; EVENT_HEADER_LEN + 3];
        buf[76..80].copy_from_slice(&3u32.to_ne_bytes());
        buf[EVENT_HEADER_LEN..].copy_from_slice(b"/ab");
        let s = Sighting::decode(&buf).unwrap();
        assert_eq!(s.path, &b"/ab"[..]);
        buf[76..80].copy_from_slice(&4u32.to_ne_bytes());
        assert!(Sighting::decode(&buf).is_err());
    }

    /// Decoding field by field reads what the kernel's `#[repr(C)]` struct holds.
    #[test]
    fn decode_reads_the_wire_struct_field_by_field() {
        let mut comm = [0u8; COMM_LEN];
        comm[..7].copy_from_slice(b"apache2");
        let hdr = EventHeader {
            key: AggKey {
                path_hash: 0x0102_0304_0506_0708,
                tgid: 11,
                errno: 2,
                syscall: 6,
                dfd: -100,
                dir_gen: 3,
                _pad: 0,
            },
            ts_ns: 12,
            flags: 0o2000000,
            aux: 14,
            cgroup_id: 0xc0ffee,
            tid: 15,
            uid: 33,
            gid: 34,
            path_len: 4,
            status: 9,
            mnt_ns: 4026531841,
            aux_gen: 2,
            _pad: 0,
            comm,
        };
        // SAFETY: EventHeader is repr(C), Copy and has no padding (size asserted in
        // observer-common), so all its bytes are initialised.
        let raw =
            unsafe { std::slice::from_raw_parts((&raw const hdr).cast::<u8>(), EVENT_HEADER_LEN) };
        let mut buf = raw.to_vec();
        buf.extend_from_slice(b"/x.y");
        let s = Sighting::decode(&buf).unwrap();
        assert_eq!(s.hdr.key, hdr.key);
        assert_eq!(
            (s.hdr.ts_ns, s.hdr.flags, s.hdr.aux, s.hdr.tid),
            (12, 0o2000000, 14, 15)
        );
        assert_eq!((s.hdr.uid, s.hdr.gid, s.hdr.status), (33, 34, 9));
        assert_eq!(
            (s.hdr.cgroup_id, s.hdr.mnt_ns, s.hdr.aux_gen),
            (0xc0ffee, 4026531841, 2)
        );
        assert_eq!(s.comm(), "apache2");
        assert_eq!(s.path, &b"/x.y"[..]);
    }
}
