//! Stage 3: aggregate (the ad-hoc mode). Each in-kernel key (path hash, tgid, errno, syscall,
//! dirfd) is learned from its first ring-buffer record, resolved in stage 2; its count and
//! timestamps come from the kernel's `AGG` map. Rows for the report are the keys grouped by
//! (absolute path, errno, place): the same path failing in two containers is two rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use bytes::Bytes;
use observer_common::{AggKey, AggVal, STATUS_UNAGGREGATED};

use crate::capture::{Clock, KernelStats, Sighting};
use crate::model::{Failure, PID_SAMPLE, Totals};
use crate::place::Place;
use crate::resolve::{KeyInfo, Resolver};

#[derive(Clone, Debug)]
struct Entry {
    info: KeyInfo,
    /// Counts from earlier lives of the key (the kernel entry was evicted and re-created).
    base: u64,
    /// The kernel's count for the key's current life.
    count: u64,
    first_ns: u64,
    /// When the count was last seen to grow (monotonic ns): the kernel reads no clock on
    /// repeats, so a repeat is dated by the poll that noticed it (resolution: the interval).
    last_ns: u64,
}

impl Entry {
    fn new(info: KeyInfo, ts_ns: u64, count: u64) -> Entry {
        Entry {
            info,
            base: 0,
            count,
            first_ns: ts_ns,
            last_ns: ts_ns,
        }
    }
}

/// A failure observer had not seen before: the first sighting of a new (path, errno).
#[derive(Clone, Debug)]
pub(crate) struct NewFailure {
    pub(crate) info: KeyInfo,
    pub(crate) time: SystemTime,
}

/// Most one-by-one failures (the kernel aggregate was full) kept apart by (path, errno,
/// syscall, process). Past it, new ones are counted in [`Totals::dropped`].
pub(crate) const MAX_SINGLES: usize = 16_384;
/// Most path bytes the ad-hoc store holds, over its kernel keys (at most
/// [`observer_common::AGG_ENTRIES`]) and its one-by-one failures. A failure whose path would pass
/// it is counted in [`Totals::dropped`] and not kept.
pub(crate) const MAX_PATH_BYTES: usize = 32 << 20;

/// What the ad-hoc mode has seen.
pub(crate) struct Store {
    keys: HashMap<AggKey, Entry>,
    /// Failures that arrived one by one because the kernel aggregate was full.
    singles: HashMap<(Bytes, i32, u32, u32), Entry>,
    rows_seen: HashSet<(Bytes, i32, Place)>,
    /// Path bytes held by `keys` and `singles`.
    path_bytes: usize,
    /// Kernel keys not kept (the bounds were full), with the count last read for each, so their
    /// later growth is counted as dropped too. At most one per kernel key.
    dropped_keys: HashMap<AggKey, u64>,
    /// Failures counted but not kept.
    dropped: u64,
    resolver: Resolver,
    /// The kernel's counters at the last poll.
    pub(crate) kernel: KernelStats,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            keys: HashMap::new(),
            singles: HashMap::new(),
            rows_seen: HashSet::new(),
            path_bytes: 0,
            dropped_keys: HashMap::new(),
            dropped: 0,
            // Its hints are made at the end: every place's view is pinned at its first sighting.
            resolver: Resolver::new(true),
            kernel: KernelStats::default(),
        }
    }
}

impl Store {
    /// Takes one ring-buffer record. Returns the failure when its (path, errno, place) is new.
    pub(crate) fn on_sighting(&mut self, s: &Sighting, clock: &Clock) -> Option<NewFailure> {
        let h = &s.hdr;
        let info = self.resolver.key_info(s)?;
        let row = (info.path.clone(), info.errno, info.place.place.clone());
        let room = self.path_bytes + info.path.len() <= MAX_PATH_BYTES;
        if h.status & STATUS_UNAGGREGATED != 0 {
            let k = (info.path.clone(), info.errno, h.key.syscall, info.tgid);
            let room = room && self.singles.len() < MAX_SINGLES;
            let e = match self.singles.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) if room => {
                    self.path_bytes += info.path.len();
                    v.insert(Entry::new(info.clone(), h.ts_ns, 0))
                }
                std::collections::hash_map::Entry::Vacant(_) => {
                    self.dropped += 1;
                    return None;
                }
            };
            e.count += 1;
            e.last_ns = e.last_ns.max(h.ts_ns);
        } else if let Some(last) = self.dropped_keys.get_mut(&h.key) {
            // Seen again after the kernel forgot it: its count starts over.
            *last = 1;
            self.dropped += 1;
            return None;
        } else {
            match self.keys.get_mut(&h.key) {
                Some(e) => {
                    // The kernel forgot this key and saw it again: keep what it had counted.
                    e.base += e.count;
                    e.count = 1;
                    e.last_ns = e.last_ns.max(h.ts_ns);
                }
                None if room => {
                    self.path_bytes += info.path.len();
                    self.keys
                        .insert(h.key, Entry::new(info.clone(), h.ts_ns, 1));
                }
                None => {
                    self.dropped_keys.insert(h.key, 1);
                    self.dropped += 1;
                    return None;
                }
            }
        }
        if self.rows_seen.insert(row) {
            Some(NewFailure {
                info,
                time: clock.wall(h.ts_ns),
            })
        } else {
            None
        }
    }

    /// Takes the kernel's current counts, read at `now_ns` (monotonic). Keys whose first record
    /// has not been read yet are left for the next call.
    pub(crate) fn update_counts(&mut self, agg: &[(AggKey, AggVal)], now_ns: u64) {
        for (k, v) in agg {
            if let Some(e) = self.keys.get_mut(k) {
                if v.count > e.count {
                    e.count = v.count;
                    e.last_ns = now_ns.max(e.first_ns);
                }
            } else if let Some(last) = self.dropped_keys.get_mut(k)
                && v.count > *last
            {
                self.dropped += v.count - *last;
                *last = v.count;
            }
        }
    }

    /// The deduplicated rows: every key grouped by (path, errno, place). A row's view is that of
    /// the first of its keys.
    pub(crate) fn failures(&self, clock: &Clock) -> Vec<Failure> {
        type Row = (Bytes, i32, Place);
        let mut rows: BTreeMap<Row, Failure> = BTreeMap::new();
        let mut pidsets: HashMap<Row, BTreeSet<u32>> = HashMap::new();
        for e in self.keys.values().chain(self.singles.values()) {
            let count = e.base + e.count;
            if count == 0 {
                continue;
            }
            let i = &e.info;
            let k = (i.path.clone(), i.errno, i.place.place.clone());
            let first = clock.wall(e.first_ns);
            let last = clock.wall(e.last_ns);
            let f = rows.entry(k.clone()).or_insert_with(|| {
                let mut f = Failure::new(i.path.clone(), i.errno, first, last);
                f.place = i.place.place.clone();
                f.view = i.place.view.clone();
                f
            });
            let open_flags = if i.syscall.intent() == observer_common::Intent::Open {
                i.flags
            } else {
                0
            };
            f.add_calls(i.syscall, count, open_flags, first, last);
            f.comms.insert(i.comm.clone());
            f.creds.insert((i.uid, i.gid));
            if f.pids.len() < PID_SAMPLE {
                f.pids.insert(i.tgid);
            }
            f.truncated |= i.truncated;
            f.unresolved |= i.unresolved;
            pidsets.entry(k).or_default().insert(i.tgid);
        }
        for (k, f) in rows.iter_mut() {
            f.pid_count = pidsets.get(k).map_or(0, |s| s.len() as u64);
        }
        rows.into_values().collect()
    }

    /// The files the watched processes read.
    pub(crate) fn opened(&self) -> &[crate::opened::OpenedFile] {
        self.resolver.opened.files()
    }

    pub(crate) fn totals(&self, failures: &[Failure]) -> Totals {
        Totals {
            failures: failures.iter().map(|f| f.count).sum(),
            distinct: failures.len() as u64,
            lost: self.kernel.lost,
            overflow: self.kernel.overflow,
            dropped: self.dropped,
            unlisted_paths: 0,
            unlisted_failures: 0,
            capture: Some(crate::model::CaptureCounters {
                unreadable_paths: self.kernel.path_faults,
                unfollowed_processes: self.kernel.pids_full,
                lost_directory_opens: self.kernel.dirfd_lost,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sighting;
    use observer_common::{AT_FDCWD, STATUS_DIRFD, Syscall};

    #[test]
    fn groups_keys_by_path_and_errno_with_syscall_breakdown() {
        let clock = Clock::fixed(0, SystemTime::UNIX_EPOCH);
        let mut st = Store::default();
        let a = sighting(b"/x", 10, 2, Syscall::Openat, 1, 0);
        let b = sighting(b"/x", 11, 2, Syscall::Newfstatat, 2, 0);
        let c = sighting(b"/x", 10, 13, Syscall::Openat, 3, 0);
        assert!(st.on_sighting(&a, &clock).is_some());
        assert!(
            st.on_sighting(&b, &clock).is_none(),
            "same (path, errno) is not new"
        );
        assert!(
            st.on_sighting(&c, &clock).is_some(),
            "other errno is a new row"
        );
        st.update_counts(
            &[
                (
                    a.hdr.key,
                    AggVal {
                        count: 3,
                        first_ns: 1_000,
                    },
                ),
                (
                    b.hdr.key,
                    AggVal {
                        count: 9,
                        first_ns: 1_000,
                    },
                ),
            ],
            9_000,
        );
        let rows = st.failures(&clock);
        assert_eq!(rows.len(), 2);
        let enoent = rows.iter().find(|f| f.errno == 2).unwrap();
        assert_eq!(
            enoent.last_seen,
            clock.wall(9_000),
            "dated by the poll that saw it grow"
        );
        assert_eq!(enoent.count, 12);
        assert_eq!(enoent.syscalls[&Syscall::Openat], 3);
        assert_eq!(enoent.syscalls[&Syscall::Newfstatat], 9);
        assert_eq!(enoent.pid_count, 2);
        assert_eq!(st.totals(&rows).failures, 13);
    }

    #[test]
    fn dirfd_relative_failures_resolve_from_recorded_directory_opens() {
        let clock = Clock::fixed(0, SystemTime::UNIX_EPOCH);
        let mut st = Store::default();
        // A process that is gone: /proc cannot help, the recorded opens must.
        let tgid = u32::MAX - 7;
        let mut root = sighting(b"/run", tgid, 0, Syscall::Openat, 0, STATUS_DIRFD);
        root.hdr.key.dfd = AT_FDCWD;
        root.hdr.aux = 5;
        assert!(
            st.on_sighting(&root, &clock).is_none(),
            "a directory open is not a failure"
        );
        let mut sub = sighting(b"systemd", tgid, 0, Syscall::Openat, 0, STATUS_DIRFD);
        sub.hdr.key.dfd = 5;
        sub.hdr.aux = 6;
        st.on_sighting(&sub, &clock);
        let mut fail = sighting(b"userdb", tgid, 2, Syscall::Openat, 9, 0);
        fail.hdr.key.dfd = 6;
        let new = st.on_sighting(&fail, &clock).expect("new failure");
        assert_eq!(new.info.path, &b"/run/systemd/userdb"[..]);
        assert!(!new.info.unresolved);
        assert_eq!(st.failures(&clock).len(), 1);
    }

    #[test]
    fn unaggregated_records_count_one_each_and_reseen_keys_keep_their_history() {
        let clock = Clock::fixed(0, SystemTime::UNIX_EPOCH);
        let mut st = Store::default();
        let s = sighting(b"/o", 1, 2, Syscall::Access, 7, STATUS_UNAGGREGATED);
        for _ in 0..5 {
            st.on_sighting(&s, &clock);
        }
        let k = sighting(b"/k", 1, 2, Syscall::Access, 8, 0);
        st.on_sighting(&k, &clock);
        st.update_counts(
            &[(
                k.hdr.key,
                AggVal {
                    count: 40,
                    first_ns: 1_000,
                },
            )],
            2_000,
        );
        // Evicted in the kernel, then seen again.
        st.on_sighting(&k, &clock);
        st.update_counts(
            &[(
                k.hdr.key,
                AggVal {
                    count: 2,
                    first_ns: 3_000,
                },
            )],
            3_000,
        );
        let rows = st.failures(&clock);
        let o = rows.iter().find(|f| f.path == b"/o"[..]).unwrap();
        let kk = rows.iter().find(|f| f.path == b"/k"[..]).unwrap();
        assert_eq!(o.count, 5);
        assert_eq!(kk.count, 42);
    }

    #[test]
    fn past_its_bounds_the_store_counts_failures_dropped_and_keeps_no_more() {
        let clock = Clock::fixed(0, SystemTime::UNIX_EPOCH);
        let mut st = Store::default();
        for i in 0..MAX_SINGLES + 100 {
            let p = format!("/s/{i}");
            let s = sighting(p.as_bytes(), 1, 2, Syscall::Access, 7, STATUS_UNAGGREGATED);
            st.on_sighting(&s, &clock);
        }
        assert_eq!(st.singles.len(), MAX_SINGLES);
        assert_eq!(st.dropped, 100);
        // A path already kept still counts.
        let s = sighting(b"/s/0", 1, 2, Syscall::Access, 7, STATUS_UNAGGREGATED);
        st.on_sighting(&s, &clock);
        // Long paths fill the byte bound: the kernel keys past it are dropped, with their growth.
        let long = "x".repeat(4000);
        let mut kept = 0u64;
        let mut last = None;
        for i in 0..(MAX_PATH_BYTES / 4000 + 10) as u64 {
            let p = format!("/k/{i}/{long}");
            let k = sighting(p.as_bytes(), 1, 2, Syscall::Openat, i, 0);
            if st.on_sighting(&k, &clock).is_some() {
                kept += 1;
            }
            last = Some(k.hdr.key);
        }
        assert!(st.path_bytes <= MAX_PATH_BYTES);
        let dropped_keys = st.dropped_keys.len() as u64;
        assert!(dropped_keys >= 10, "{dropped_keys}");
        st.update_counts(
            &[(
                last.unwrap(),
                AggVal {
                    count: 50,
                    first_ns: 0,
                },
            )],
            1_000,
        );
        let rows = st.failures(&clock);
        let t = st.totals(&rows);
        assert_eq!(t.dropped, 100 + dropped_keys + 49);
        assert_eq!(
            t.failures,
            MAX_SINGLES as u64 + 1 + kept,
            "what is kept is counted exactly"
        );
    }
}
