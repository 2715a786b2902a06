//! Stage 6, record mode's aggregation before the database: which kernel key stands for which
//! (path, errno, syscall, comm, credentials), how much each key's count grew since it was last
//! read, and the per-minute buckets those deltas land in until the next flush.
//!
//! Pure logic: the caller passes decoded records, the kernel's counts and the time; nothing here
//! reads a clock, the kernel or the disk.
//!
//! Counting rule: the kernel counts each key from 1 (its first failure, which also sends the
//! key's record over the ring buffer). The record adds that 1 to the bucket of its own minute;
//! each later read of the kernel's count adds the growth since the previous read to the bucket of
//! the minute of that read. A key forgotten in the kernel is forgotten here too, so when it fails
//! again it starts from 1 with a new record: nothing is counted twice, including across a
//! restart of observer (which starts from empty kernel maps).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use observer_common::{AggKey, AggVal, STATUS_UNAGGREGATED, Syscall};

use crate::aggregate::NewFailure;
use crate::capture::Sighting;
use crate::place::Place;
use crate::resolve::KeyInfo;

/// `status` bit: the kernel cut the path at PATH_MAX.
pub(crate) const BUCKET_TRUNCATED: u32 = 1;
/// `status` bit: a relative path that could not be made absolute.
pub(crate) const BUCKET_UNRESOLVED: u32 = 2;

/// Minutes since the epoch of a time in milliseconds since the epoch.
pub(crate) fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// What one history row is counted by (besides its minute).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    pub(crate) path: Bytes,
    pub(crate) errno: i32,
    pub(crate) syscall: Syscall,
    pub(crate) comm: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Where the process ran.
    pub(crate) place: Place,
}

/// What a bucket holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketVal {
    pub(crate) count: u64,
    /// Milliseconds since the epoch.
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    /// Union of open flags (open-family syscalls only).
    pub(crate) open_flags: u64,
    /// BUCKET_TRUNCATED | BUCKET_UNRESOLVED.
    pub(crate) status: u32,
    /// One process that made the calls (a sample).
    pub(crate) pid: u32,
}

impl BucketVal {
    fn merge(&mut self, o: &BucketVal) {
        self.count += o.count;
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        self.open_flags |= o.open_flags;
        self.status |= o.status;
        self.pid = o.pid;
    }
}

/// Kernel-side loss counters for one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MinuteStats {
    /// Failures the kernel could not deliver (ring buffer full).
    pub(crate) lost: u64,
    /// Failures delivered one by one because the kernel aggregate was full.
    pub(crate) overflow: u64,
    /// Failures observer had to drop itself: in-memory buckets full while the database could not
    /// be written, or counted under a key whose record never arrived.
    pub(crate) dropped: u64,
}

impl MinuteStats {
    pub(crate) fn is_zero(&self) -> bool {
        *self == MinuteStats::default()
    }
}

/// Deltas waiting for the next flush, by (key, minute).
#[derive(Debug)]
pub(crate) struct Pending {
    buckets: HashMap<(Arc<BucketKey>, i64), BucketVal>,
    /// The latest minute pending for each key: where deltas go when `buckets` is full.
    latest: HashMap<Arc<BucketKey>, i64>,
    pub(crate) stats: BTreeMap<i64, MinuteStats>,
    cap: usize,
}

impl Pending {
    /// `cap`: at most this many (key, minute) buckets are held (the database may be unwritable
    /// for a long time). Beyond it a delta joins its key's latest pending bucket (its count
    /// survives, its minute is approximate); a key with no pending bucket at all is dropped and
    /// counted in `MinuteStats::dropped`.
    pub(crate) fn new(cap: usize) -> Pending {
        Pending {
            buckets: HashMap::new(),
            latest: HashMap::new(),
            stats: BTreeMap::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.stats.is_empty()
    }

    pub(crate) fn add(&mut self, key: &Arc<BucketKey>, v: BucketVal) {
        if v.count == 0 {
            return;
        }
        let minute = minute_of(v.last_ms);
        if let Some(b) = self.buckets.get_mut(&(key.clone(), minute)) {
            b.merge(&v);
            return;
        }
        if self.buckets.len() >= self.cap {
            if let Some(&m) = self.latest.get(key)
                && let Some(b) = self.buckets.get_mut(&(key.clone(), m))
            {
                // Keep the count; its time stays within the bucket's own minute.
                let mut v = v;
                v.first_ms = v.first_ms.clamp(m * 60_000, m * 60_000 + 59_999);
                v.last_ms = v.last_ms.clamp(m * 60_000, m * 60_000 + 59_999);
                b.merge(&v);
            } else {
                self.stats.entry(minute).or_default().dropped += v.count;
            }
            return;
        }
        let mut v = v;
        v.first_ms = v.first_ms.max(minute * 60_000);
        self.buckets.insert((key.clone(), minute), v);
        let l = self.latest.entry(key.clone()).or_insert(minute);
        *l = (*l).max(minute);
    }

    pub(crate) fn add_stats(&mut self, minute: i64, s: MinuteStats) {
        if s.is_zero() {
            return;
        }
        let e = self.stats.entry(minute).or_default();
        e.lost += s.lost;
        e.overflow += s.overflow;
        e.dropped += s.dropped;
    }

    /// The buckets, sorted by minute then key (the order they are written in).
    pub(crate) fn buckets(&self) -> Vec<(&BucketKey, i64, &BucketVal)> {
        let mut v: Vec<_> = self
            .buckets
            .iter()
            .map(|((k, m), v)| (k.as_ref(), *m, v))
            .collect();
        v.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        v
    }

    /// Forgets everything (after a successful flush).
    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
        self.latest.clear();
        self.stats.clear();
    }

    /// Total failures pending.
    pub(crate) fn failures(&self) -> u64 {
        self.buckets.values().map(|v| v.count).sum()
    }
}

/// One kernel key as record mode knows it.
#[derive(Clone, Debug)]
struct KeyState {
    bucket: Arc<BucketKey>,
    /// The kernel's count when last read (or 1 from the key's record).
    count: u64,
    /// Monotonic ns of the last read that saw the count grow (or of the record).
    last_growth_ns: u64,
    open_flags: u64,
    status: u32,
    tgid: u32,
}

/// Counters by (errno, syscall, comm, container, unit) since observer started: what `/metrics`
/// exports. `container` is the 12-digit short id, `unit` the systemd service; empty when none.
pub(crate) type Totals = BTreeMap<(i32, Syscall, String, String, String), u64>;

/// Most distinct process names with their own label in [`Tracker::totals`]; later names count
/// under [`OTHER_COMM`] so the label set stays bounded even with `--all`.
pub(crate) const MAX_COMM_LABELS: usize = 32;
/// Most distinct containers and units with their own labels; later ones count under
/// `container="_other"` (or `unit="_other"`).
pub(crate) const MAX_PLACE_LABELS: usize = 32;
pub(crate) const OTHER_COMM: &str = "_other";

/// Most (path, errno) pairs remembered to announce each only once on the JSON-lines stream;
/// past it the memory starts over (a failure may then be announced again).
pub(crate) const MAX_SEEN: usize = 200_000;

/// Most path bytes record mode holds for its keys (shared by the kernel keys it tracks and the
/// buckets pending). A failure whose new key would pass it is counted as dropped and not kept.
pub(crate) const MAX_KEY_BYTES: usize = 32 << 20;

/// Kernel keys counted by record mode, and what it has counted for them.
#[derive(Default)]
pub(crate) struct Tracker {
    keys: HashMap<AggKey, KeyState>,
    /// Keys read from the kernel whose record has not arrived: how many reads have missed it.
    unknown: HashMap<AggKey, u32>,
    /// Hashes of the (path, errno) pairs already announced.
    seen: HashSet<u64>,
    /// Interned keys, so the keys of many pids share one path.
    interned: HashMap<Arc<BucketKey>, ()>,
    /// Path bytes of `interned`.
    interned_bytes: usize,
    pub(crate) totals: Totals,
    comm_labels: HashSet<String>,
    place_labels: HashSet<(String, String)>,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The shared copy of `k`; `None` when a new one would pass [`MAX_KEY_BYTES`].
    fn intern(&mut self, k: BucketKey) -> Option<Arc<BucketKey>> {
        if let Some((a, ())) = self.interned.get_key_value(&k) {
            return Some(a.clone());
        }
        if self.interned_bytes + k.path.len() > MAX_KEY_BYTES {
            // Buckets flushed since the last collection may have freed some.
            self.gc_interned();
            if self.interned_bytes + k.path.len() > MAX_KEY_BYTES {
                return None;
            }
        }
        self.interned_bytes += k.path.len();
        let a = Arc::new(k);
        self.interned.insert(a.clone(), ());
        Some(a)
    }

    fn count_total(&mut self, k: &BucketKey, n: u64) {
        let comm = if self.comm_labels.contains(&k.comm) {
            k.comm.clone()
        } else if self.comm_labels.len() < MAX_COMM_LABELS {
            self.comm_labels.insert(k.comm.clone());
            k.comm.clone()
        } else {
            OTHER_COMM.to_string()
        };
        let place = match (&k.place.container, &k.place.unit) {
            (Some(c), _) => (c.id[..c.id.len().min(12)].to_string(), String::new()),
            (None, Some(u)) => (String::new(), u.clone()),
            (None, None) => (String::new(), String::new()),
        };
        let place =
            if place.0.is_empty() && place.1.is_empty() || self.place_labels.contains(&place) {
                place
            } else if self.place_labels.len() < MAX_PLACE_LABELS {
                self.place_labels.insert(place.clone());
                place
            } else if place.0.is_empty() {
                (String::new(), OTHER_COMM.to_string())
            } else {
                (OTHER_COMM.to_string(), String::new())
            };
        *self
            .totals
            .entry((k.errno, k.syscall, comm, place.0, place.1))
            .or_insert(0) += n;
    }

    /// Takes one decoded ring-buffer record whose path `info` resolved, seen at `wall_ms`
    /// (the record's own time) and `mono_ns`. Returns the failure when its (path, errno) had not
    /// been announced yet.
    pub(crate) fn on_sighting(
        &mut self,
        s: &Sighting,
        info: KeyInfo,
        wall_ms: i64,
        mono_ns: u64,
        pending: &mut Pending,
    ) -> Option<NewFailure> {
        let h = &s.hdr;
        let Some(bucket) = self.intern(BucketKey {
            path: info.path.clone(),
            errno: info.errno,
            syscall: info.syscall,
            comm: info.comm.clone(),
            uid: info.uid,
            gid: info.gid,
            place: info.place.place.clone(),
        }) else {
            // Not kept. A kernel key stays unknown: `on_counts` counts all it counted as dropped
            // (this failure included) and has the kernel forget it.
            if h.status & STATUS_UNAGGREGATED != 0 {
                pending.add_stats(
                    minute_of(wall_ms),
                    MinuteStats {
                        dropped: 1,
                        ..MinuteStats::default()
                    },
                );
            }
            return None;
        };
        let open_flags = if info.syscall.intent() == observer_common::Intent::Open {
            info.flags
        } else {
            0
        };
        let status = if info.truncated { BUCKET_TRUNCATED } else { 0 }
            | if info.unresolved {
                BUCKET_UNRESOLVED
            } else {
                0
            };
        pending.add(
            &bucket,
            BucketVal {
                count: 1,
                first_ms: wall_ms,
                last_ms: wall_ms,
                open_flags,
                status,
                pid: info.tgid,
            },
        );
        self.count_total(&bucket, 1);
        if h.status & STATUS_UNAGGREGATED == 0 {
            // A new key, or a key the kernel forgot and saw again: either way its count
            // restarts at this record's 1.
            self.unknown.remove(&h.key);
            self.keys.insert(
                h.key,
                KeyState {
                    bucket,
                    count: 1,
                    last_growth_ns: mono_ns,
                    open_flags,
                    status,
                    tgid: info.tgid,
                },
            );
        }
        let mut hasher = DefaultHasher::new();
        (&info.path, info.errno).hash(&mut hasher);
        let h = hasher.finish();
        if self.seen.len() >= MAX_SEEN && !self.seen.contains(&h) {
            self.seen.clear();
        }
        let fresh = self.seen.insert(h);
        fresh.then(|| NewFailure {
            time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(wall_ms.max(0) as u64),
            info,
        })
    }

    /// Takes the kernel's counts read at `wall_ms` / `mono_ns`: the growth of each known key goes
    /// to `pending`. Returns the keys to forget in the kernel because their record never arrived
    /// (lost when the ring buffer was full): they were missed by `miss_limit` reads in a row.
    /// Their counts are added to `MinuteStats::dropped`; forgetting them makes the kernel send a
    /// new record at their next failure.
    pub(crate) fn on_counts(
        &mut self,
        agg: &[(AggKey, AggVal)],
        wall_ms: i64,
        mono_ns: u64,
        miss_limit: u32,
        pending: &mut Pending,
    ) -> Vec<AggKey> {
        let mut orphans = Vec::new();
        let mut still_unknown = HashMap::new();
        let mut grown = Vec::new();
        for (k, v) in agg {
            match self.keys.get_mut(k) {
                Some(st) => {
                    if v.count > st.count {
                        let delta = v.count - st.count;
                        st.count = v.count;
                        st.last_growth_ns = mono_ns;
                        pending.add(
                            &st.bucket,
                            BucketVal {
                                count: delta,
                                first_ms: wall_ms,
                                last_ms: wall_ms,
                                open_flags: st.open_flags,
                                status: st.status,
                                pid: st.tgid,
                            },
                        );
                        grown.push((st.bucket.clone(), delta));
                    }
                }
                None => {
                    let misses = self.unknown.get(k).copied().unwrap_or(0) + 1;
                    if misses >= miss_limit {
                        orphans.push(*k);
                        pending.add_stats(
                            minute_of(wall_ms),
                            MinuteStats {
                                dropped: v.count,
                                ..MinuteStats::default()
                            },
                        );
                    } else {
                        still_unknown.insert(*k, misses);
                    }
                }
            }
        }
        self.unknown = still_unknown;
        for (b, n) in grown {
            self.count_total(&b, n);
        }
        orphans
    }

    /// Forgets the keys whose count has not grown since `before_ns` (monotonic); returns them,
    /// to be removed from the kernel map too. Everything they counted is in `pending` already.
    /// The keys that did not grow since `before_ns`.
    pub(crate) fn idle_keys(&self, before_ns: u64) -> Vec<AggKey> {
        self.keys
            .iter()
            .filter(|(_, st)| st.last_growth_ns < before_ns)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Forgets `keys` (taken out of the kernel's map, their last counts counted).
    pub(crate) fn forget(&mut self, keys: &[AggKey]) {
        for k in keys {
            self.keys.remove(k);
        }
        self.gc_interned();
    }

    #[cfg(test)]
    pub(crate) fn evict_idle(&mut self, before_ns: u64) -> Vec<AggKey> {
        let idle = self.idle_keys(before_ns);
        self.forget(&idle);
        idle
    }

    /// Forgets every key (the capture was restarted: new, empty kernel maps).
    pub(crate) fn reset_keys(&mut self) {
        self.keys.clear();
        self.unknown.clear();
        self.gc_interned();
    }

    fn gc_interned(&mut self) {
        // An interned key only the table itself holds is unused.
        let mut freed = 0;
        self.interned.retain(|k, ()| {
            let used = Arc::strong_count(k) > 1;
            if !used {
                freed += k.path.len();
            }
            used
        });
        self.interned_bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Resolver;
    use crate::testutil;

    fn key(hash: u64, tgid: u32) -> AggKey {
        AggKey {
            path_hash: hash,
            tgid,
            errno: 2,
            syscall: Syscall::Openat as u32,
            dfd: 0,
            dir_gen: 0,
            _pad: 0,
        }
    }

    /// The shared record fixture for key `k`, and what the resolver makes of it.
    fn sighting(path: &[u8], k: AggKey, status: u32) -> (Sighting, KeyInfo) {
        let s = testutil::sighting(path, k.tgid, k.errno, Syscall::Openat, k.path_hash, status);
        let info = Resolver::new(false).key_info(&s).expect("a failure record");
        (s, info)
    }

    fn val(count: u64) -> AggVal {
        AggVal { count, first_ns: 0 }
    }

    fn by_minute(p: &Pending) -> Vec<(Vec<u8>, i64, u64)> {
        p.buckets()
            .into_iter()
            .map(|(k, m, v)| (k.path.to_vec(), m, v.count))
            .collect()
    }

    #[test]
    fn minutes_floor_toward_minus_infinity() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 1);
        assert_eq!(minute_of(-1), -1);
    }

    #[test]
    fn record_counts_one_in_its_minute_and_reads_add_the_growth_in_theirs() {
        let mut t = Tracker::new();
        let mut p = Pending::new(100);
        let k = key(1, 10);
        let (s, info) = sighting(b"/x", k, 0);
        // The record at 00:59.5, the first read at 01:00.5 sees 5: 4 more.
        assert!(t.on_sighting(&s, info.clone(), 59_500, 1, &mut p).is_some());
        assert!(t.on_counts(&[(k, val(5))], 60_500, 2, 3, &mut p).is_empty());
        assert_eq!(
            by_minute(&p),
            vec![(b"/x".to_vec(), 0, 1), (b"/x".to_vec(), 1, 4)]
        );
        // A read with no growth adds nothing; the next growth is a delta, not the total.
        t.on_counts(&[(k, val(5))], 61_000, 3, 3, &mut p);
        t.on_counts(&[(k, val(7))], 62_000, 4, 3, &mut p);
        let b = p.buckets();
        assert_eq!(b[1].2.count, 6);
        assert_eq!(b[1].2.first_ms, 60_500);
        assert_eq!(b[1].2.last_ms, 62_000);
        assert_eq!(b[0].2.open_flags, 0o2000000);
        assert_eq!(p.failures(), 7);
        assert_eq!(
            t.totals[&(2, Syscall::Openat, "apache2".into(), "".into(), "".into())],
            7,
            "metrics totals follow the same deltas"
        );
    }

    #[test]
    fn flushed_deltas_are_not_counted_again_and_evicted_keys_restart_from_their_record() {
        let mut t = Tracker::new();
        let mut p = Pending::new(100);
        let k = key(1, 10);
        let (s, info) = sighting(b"/x", k, 0);
        t.on_sighting(&s, info.clone(), 0, 1, &mut p);
        t.on_counts(&[(k, val(3))], 1_000, 2, 3, &mut p);
        assert_eq!(p.failures(), 3);
        p.clear(); // flushed
        t.on_counts(&[(k, val(3))], 2_000, 3, 3, &mut p);
        assert_eq!(p.failures(), 0, "no growth, nothing pending");
        // Idle since mono 2: evicted (and removed from the kernel map by the caller).
        assert_eq!(t.evict_idle(10), vec![k]);
        assert!(t.is_empty());
        // The kernel sees it again: a new record, count 1 again, then 2.
        t.on_sighting(&s, info, 3_000, 11, &mut p);
        t.on_counts(&[(k, val(2))], 4_000, 12, 3, &mut p);
        assert_eq!(p.failures(), 2);
        assert_eq!(
            t.totals[&(2, Syscall::Openat, "apache2".into(), "".into(), "".into())],
            5,
            "3 + 2, nothing twice"
        );
    }

    #[test]
    fn keys_without_a_record_are_given_up_after_the_miss_limit() {
        let mut t = Tracker::new();
        let mut p = Pending::new(100);
        let k = key(9, 10);
        assert!(t.on_counts(&[(k, val(4))], 0, 1, 2, &mut p).is_empty());
        assert_eq!(t.on_counts(&[(k, val(5))], 1_000, 2, 2, &mut p), vec![k]);
        assert_eq!(p.failures(), 0);
        assert_eq!(p.stats[&0].dropped, 5);
        // A record that arrives between two reads clears the miss.
        let k2 = key(8, 10);
        t.on_counts(&[(k2, val(1))], 0, 1, 2, &mut p);
        let (s, info) = sighting(b"/y", k2, 0);
        t.on_sighting(&s, info, 0, 1, &mut p);
        assert!(t.on_counts(&[(k2, val(2))], 0, 2, 2, &mut p).is_empty());
        assert_eq!(p.failures(), 2);
    }

    #[test]
    fn unaggregated_records_count_one_each_and_do_not_become_keys() {
        let mut t = Tracker::new();
        let mut p = Pending::new(100);
        let k = key(1, 10);
        let (s, info) = sighting(b"/o", k, STATUS_UNAGGREGATED);
        assert!(t.on_sighting(&s, info.clone(), 0, 1, &mut p).is_some());
        assert!(t.on_sighting(&s, info, 10, 1, &mut p).is_none());
        assert_eq!(p.failures(), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn pids_of_one_path_share_a_bucket_and_the_path_bytes() {
        let mut t = Tracker::new();
        let mut p = Pending::new(100);
        for tgid in [10, 11, 12] {
            let (s, info) = sighting(b"/shared", key(1, tgid), 0);
            t.on_sighting(&s, info, 0, 1, &mut p);
        }
        assert_eq!(p.len(), 1);
        assert_eq!(p.failures(), 3);
        assert_eq!(t.interned.len(), 1);
        p.clear(); // flushed
        t.evict_idle(u64::MAX);
        assert!(t.interned.is_empty(), "unused keys are freed");
    }

    #[test]
    fn a_full_pending_table_keeps_counts_in_the_latest_bucket_or_counts_them_dropped() {
        let mut p = Pending::new(2);
        let a = Arc::new(BucketKey {
            path: Bytes::from_static(b"/a"),
            errno: 2,
            syscall: Syscall::Openat,
            comm: "c".into(),
            uid: 0,
            gid: 0,
            place: Place::default(),
        });
        let mut b = (*a).clone();
        b.path = Bytes::from_static(b"/b");
        let b = Arc::new(b);
        let mut c = (*a).clone();
        c.path = Bytes::from_static(b"/c");
        let c = Arc::new(c);
        let v = |count, ms| BucketVal {
            count,
            first_ms: ms,
            last_ms: ms,
            open_flags: 0,
            status: 0,
            pid: 1,
        };
        p.add(&a, v(1, 0));
        p.add(&b, v(1, 0));
        p.add(&a, v(5, 120_000)); // full: joins a's minute-0 bucket
        p.add(&c, v(7, 120_000)); // full, no bucket for c: dropped
        assert_eq!(p.len(), 2);
        assert_eq!(p.failures(), 7);
        let rows = p.buckets();
        assert_eq!(rows[0].2.last_ms, 59_999, "clamped into its own minute");
        assert_eq!(p.stats[&2].dropped, 7);
    }

    #[test]
    fn comm_labels_are_bounded() {
        let mut t = Tracker::new();
        let mut p = Pending::new(1000);
        for i in 0..(MAX_COMM_LABELS + 5) {
            let (s, mut info) = sighting(b"/x", key(i as u64, i as u32), 0);
            info.comm = format!("c{i}");
            t.on_sighting(&s, info, 0, 1, &mut p);
        }
        assert_eq!(t.totals.len(), MAX_COMM_LABELS + 1);
        assert_eq!(
            t.totals[&(2, Syscall::Openat, OTHER_COMM.into(), "".into(), "".into())],
            5
        );
    }

    #[test]
    fn place_labels_are_bounded() {
        use crate::place::{Container, Runtime};
        let mut t = Tracker::new();
        let mut p = Pending::new(1000);
        for i in 0..(MAX_PLACE_LABELS + 3) {
            let (s, mut info) = sighting(b"/x", key(i as u64, i as u32), 0);
            let mut place = info.place.place.clone();
            if i % 2 == 0 {
                place.container = Some(Container {
                    runtime: Runtime::Docker,
                    id: format!("{i:02}{}", "a".repeat(62)),
                    pod: None,
                });
            } else {
                place.unit = Some(format!("u{i}.service"));
            }
            info.place = std::sync::Arc::new(crate::place::Where {
                place,
                view: info.place.view.clone(),
            });
            t.on_sighting(&s, info, 0, 1, &mut p);
        }
        let labels: HashSet<(&str, &str)> = t
            .totals
            .keys()
            .map(|k| (k.3.as_str(), k.4.as_str()))
            .collect();
        assert_eq!(labels.len(), MAX_PLACE_LABELS + 2, "{labels:?}");
        assert!(labels.contains(&("00aaaaaaaaaa", "")), "{labels:?}");
        assert!(labels.contains(&("_other", "")) && labels.contains(&("", "_other")));
    }

    #[test]
    fn keys_past_the_byte_bound_are_counted_dropped_and_room_comes_back_after_a_flush() {
        let mut t = Tracker::new();
        let mut p = Pending::new(1_000_000);
        let long = "x".repeat(4000);
        let n = (MAX_KEY_BYTES / 4000 + 5) as u64;
        let mut refused = vec![];
        for i in 0..n {
            let k = key(i, 10);
            let (s, info) = sighting(format!("/{i}/{long}").as_bytes(), k, 0);
            t.on_sighting(&s, info, 0, 1, &mut p);
            if !t.keys.contains_key(&k) {
                refused.push(k);
            }
        }
        assert!(t.interned_bytes <= MAX_KEY_BYTES);
        assert!(refused.len() >= 5, "{}", refused.len());
        let kept = p.failures();
        assert_eq!(kept + refused.len() as u64, n);
        // The kernel counted 3 for each refused key: all 3 are dropped, none kept.
        let counts: Vec<_> = refused.iter().map(|k| (*k, val(3))).collect();
        t.on_counts(&counts, 0, 1, 2, &mut p);
        let orphans = t.on_counts(&counts, 0, 2, 2, &mut p);
        assert_eq!(orphans.len(), refused.len());
        assert_eq!(p.stats[&0].dropped, 3 * refused.len() as u64);
        // One-by-one failures past the bound count one each.
        let (s, info) = sighting(
            format!("/u/{long}").as_bytes(),
            key(u64::MAX, 10),
            STATUS_UNAGGREGATED,
        );
        t.on_sighting(&s, info, 0, 1, &mut p);
        assert_eq!(p.stats[&0].dropped, 3 * refused.len() as u64 + 1);
        // Flushed and forgotten: the room is back.
        p.clear();
        let all: Vec<_> = t.keys.keys().copied().collect();
        t.forget(&all);
        assert_eq!(t.interned_bytes, 0);
        let k = refused[0];
        let (s, info) = sighting(format!("/again/{long}").as_bytes(), k, 0);
        t.on_sighting(&s, info, 0, 1, &mut p);
        assert!(t.keys.contains_key(&k));
    }
}
