//! Unique visitors without cookies or stored addresses (issue #13, item 2):
//! who a visitor is, the daily salt, and the sketch that counts them.
//!
//! A visitor of a counter on a UTC day is `HMAC-SHA256(salt of the day,
//! address | User-Agent | counter)`, cut to 64 bits ([`visitor_hash`]). The
//! salt is 32 random bytes kept in the record (`visitor_salts`, one row per
//! day), made by whichever replica needs it first (insert-if-missing, then
//! read: every replica gets the same one) and deleted by the first read of
//! a later day's salt once it is older than yesterday: after that nobody, the operator included, can recompute a
//! hash from an address, so the record holds nothing that links a visitor to
//! an address. The address and the User-Agent are never stored or logged;
//! only the hash travels to the writer.
//!
//! Each (counter, day) has a [`Sketch`] in the record (`visitor_days`): the
//! exact set of hashes up to [`EXACT_LIMIT`] visitors, then a HyperLogLog of
//! 2^14 registers (16 KiB, standard error 0.81%). The writer merges the
//! hashes of a batch into it in the batch's own transaction, for the
//! counters whose hits commit; the merge is idempotent (a set union, a
//! maximum per register), so a retried batch cannot count a visitor twice.
//! To keep the hit path cheap the writer drops, before the commit, the
//! hashes it has already merged today ([`Seen`]): a returning visitor costs
//! nothing in the record.
//!
//! # States and what each guarantees
//!
//! | state | a hit's visitor | guarantee |
//! |---|---|---|
//! | salt of the day in memory | hashed, sent with the hit | counted once per (counter, day) in the sketch, exactly below `EXACT_LIMIT` |
//! | salt not yet read (first hit of the day in this process) | the hit waits for one read (insert-if-missing) of the record | as above |
//! | record unreachable for the salt | the hit is counted without a visitor | hits exact, that visitor missing |
//! | the hit's batch goes to the backlog (record down) | the visitor is dropped (held increments carry no visitors) | hits exact, visitors an undercount during the outage |
//! | the hit's counter refused (range, quota) | not merged | a visitor is only ever counted with a counted hit |
//!
//! A counter created with `first_hit_only` counts only each visitor's first
//! hit of the day: that needs membership, which a HyperLogLog cannot answer
//! exactly, so the engine claims (visitor, day) in the record
//! (`visitor_firsts`, a primary-key insert that one replica wins) before
//! the hit is queued; see `docs/architecture.md`, section 10.
//!
//! Hand-written rather than a HyperLogLog crate: the input is already a
//! uniform keyed 64-bit hash (no hashing needed), the record needs a byte
//! format of its own that no crate version can change under it, and the
//! whole estimator (HyperLogLog with linear counting below 11,500, as
//! HyperLogLog++ chooses for 2^14 registers) is a few dozen lines.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::counter::CounterId;

/// log2 of the registers of a dense sketch.
const PRECISION: u32 = 14;
const REGISTERS: usize = 1 << PRECISION;

/// Most hashes a sketch keeps exactly (8 KiB); one more and it turns dense.
pub const EXACT_LIMIT: usize = 1024;

/// Below this estimate linear counting is more accurate than the
/// HyperLogLog mean (HyperLogLog++'s threshold for 2^14 registers).
const LINEAR_COUNTING_BELOW: f64 = 11_500.0;

/// The byte format's tags.
const EXACT_TAG: u8 = 1;
const DENSE_TAG: u8 = 2;

/// The distinct visitors of one counter on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sketch {
    /// Sorted, no duplicates, at most `EXACT_LIMIT`.
    Exact(Vec<u64>),
    /// One register per 2^14th of the hash space: the longest run of
    /// leading zeros seen there, plus one.
    Dense(Box<[u8]>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::Exact(Vec::new())
    }
}

impl Sketch {
    /// Adds one visitor; true when the sketch changed.
    pub fn insert(&mut self, hash: u64) -> bool {
        match self {
            Sketch::Exact(hashes) => match hashes.binary_search(&hash) {
                Ok(_) => false,
                Err(at) => {
                    hashes.insert(at, hash);
                    if hashes.len() > EXACT_LIMIT {
                        self.densify();
                    }
                    true
                }
            },
            Sketch::Dense(registers) => {
                let (index, rank) = register_of(hash);
                if registers[index] < rank {
                    registers[index] = rank;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Adds every visitor of `other` (a union).
    pub fn merge(&mut self, other: &Sketch) {
        match other {
            Sketch::Exact(hashes) => {
                for hash in hashes {
                    self.insert(*hash);
                }
            }
            Sketch::Dense(theirs) => {
                self.densify();
                if let Sketch::Dense(ours) = self {
                    for (ours, theirs) in ours.iter_mut().zip(theirs.iter()) {
                        *ours = (*ours).max(*theirs);
                    }
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Sketch::Exact(hashes) = self {
            let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
            for hash in hashes.iter() {
                let (index, rank) = register_of(*hash);
                registers[index] = registers[index].max(rank);
            }
            *self = Sketch::Dense(registers);
        }
    }

    /// How many distinct visitors: exact below `EXACT_LIMIT`, else an
    /// estimate (0.81% standard error).
    pub fn estimate(&self) -> i64 {
        let registers = match self {
            Sketch::Exact(hashes) => return hashes.len() as i64,
            Sketch::Dense(registers) => registers,
        };
        let m = REGISTERS as f64;
        let zeros = registers.iter().filter(|r| **r == 0).count();
        if zeros > 0 {
            let linear = m * (m / zeros as f64).ln();
            if linear <= LINEAR_COUNTING_BELOW {
                return linear.round() as i64;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = registers.iter().map(|r| (-f64::from(*r)).exp2()).sum();
        (alpha * m * m / sum).round() as i64
    }

    /// The record's form: a tag byte, then the hashes (8 bytes each, little
    /// endian) or the registers.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Sketch::Exact(hashes) => {
                let mut bytes = Vec::with_capacity(1 + hashes.len() * 8);
                bytes.push(EXACT_TAG);
                for hash in hashes {
                    bytes.extend_from_slice(&hash.to_le_bytes());
                }
                bytes
            }
            Sketch::Dense(registers) => {
                let mut bytes = Vec::with_capacity(1 + REGISTERS);
                bytes.push(DENSE_TAG);
                bytes.extend_from_slice(registers);
                bytes
            }
        }
    }

    /// Reads the record's form; `None` for bytes this version did not write.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (tag, body) = bytes.split_first()?;
        match *tag {
            EXACT_TAG if body.len() % 8 == 0 && body.len() / 8 <= EXACT_LIMIT => {
                let mut hashes: Vec<u64> = body
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                hashes.sort_unstable();
                hashes.dedup();
                Some(Sketch::Exact(hashes))
            }
            DENSE_TAG if body.len() == REGISTERS => Some(Sketch::Dense(body.into())),
            _ => None,
        }
    }
}

/// The register a hash falls in (its top `PRECISION` bits) and its rank
/// (leading zeros of the rest, plus one).
fn register_of(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - PRECISION)) as usize;
    // A guard bit keeps the rank at most 64 - PRECISION + 1.
    let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
    (index, rest.leading_zeros() as u8 + 1)
}

/// The visitor of a hit: the daily salt's keyed hash of the client's
/// address, its User-Agent and the counter, cut to 64 bits. Each part is
/// length-prefixed, so no two different triples hash the same input.
pub fn visitor_hash(salt: &[u8], addr: IpAddr, user_agent: &[u8], counter: &CounterId) -> u64 {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key length");
    let addr = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    mac.update(&addr);
    for part in [
        user_agent,
        counter.namespace.as_bytes(),
        counter.key.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    let tag = mac.finalize().into_bytes();
    u64::from_le_bytes(tag[..8].try_into().unwrap_or([0; 8]))
}

/// A visitor as a hit carries it to the writer: the day of the salt that
/// hashed it (days since 1970-01-01, UTC) and the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Visit {
    pub day: i64,
    pub hash: u64,
}

/// The visitors of one counter on one day that a batch merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayVisits {
    pub counter: CounterId,
    pub day: i64,
    /// Sorted, no duplicates.
    pub hashes: Vec<u64>,
}

/// The UTC day visitors are counted in. Tests shift it to cross a day
/// boundary without waiting for one.
#[derive(Debug, Default)]
pub struct Clock {
    offset_days: AtomicI64,
}

impl Clock {
    /// Days since 1970-01-01 of the current UTC date, shifted.
    pub fn today(&self) -> i64 {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        secs.div_euclid(86_400) + self.offset_days.load(Ordering::Relaxed)
    }

    /// Moves the visitors' day by `days` (tests).
    pub fn advance_days(&self, days: i64) {
        self.offset_days.fetch_add(days, Ordering::Relaxed);
    }
}

/// This process's copy of the current day's salt.
#[derive(Debug, Default)]
pub struct SaltCache {
    current: std::sync::Mutex<Option<(i64, Arc<[u8]>)>>,
}

impl SaltCache {
    pub fn get(&self, day: i64) -> Option<Arc<[u8]>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|(d, _)| *d == day)
            .map(|(_, s)| s.clone())
    }

    pub fn put(&self, day: i64, salt: Arc<[u8]>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((day, salt));
    }
}

/// The visitors this process has merged into the record today, so that a
/// returning visitor's hits carry no sketch work. Bounded by `SEEN_LIMIT`
/// hashes (about 5 MiB: 2^19 slots of 9 bytes); when full it is emptied,
/// which costs only re-merging (idempotent) visitors already counted.
#[derive(Debug, Default)]
pub struct Seen {
    day: i64,
    hashes: std::collections::HashSet<u64>,
}

/// Most hashes [`Seen`] holds.
pub const SEEN_LIMIT: usize = 262_144;

impl Seen {
    /// Whether `visit` was merged by this process already (the hash covers
    /// the counter, so one set serves every counter).
    pub fn contains(&self, visit: &Visit) -> bool {
        visit.day == self.day && self.hashes.contains(&visit.hash)
    }

    /// Notes merged visits; another day's visits start a new set.
    pub fn note(&mut self, visits: &[DayVisits]) {
        for day_visits in visits {
            if day_visits.day > self.day {
                self.day = day_visits.day;
                self.hashes.clear();
            }
            if day_visits.day != self.day {
                continue;
            }
            if self.hashes.len() + day_visits.hashes.len() > SEEN_LIMIT {
                self.hashes.clear();
            }
            self.hashes.extend(day_visits.hashes.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A uniform stream of 64-bit hashes (splitmix64), reproducible.
    pub(crate) fn hashes(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        let mut state = seed;
        (0..n).map(move |_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn below_the_limit_the_count_is_exact_and_repeats_change_nothing() {
        let mut sketch = Sketch::default();
        for hash in hashes(1, EXACT_LIMIT) {
            assert!(sketch.insert(hash));
            assert!(!sketch.insert(hash), "a repeat is not a new visitor");
        }
        assert!(matches!(sketch, Sketch::Exact(_)));
        assert_eq!(sketch.estimate(), EXACT_LIMIT as i64);
        // One more turns it dense, still within a few of the truth.
        sketch.insert(hashes(2, 1).next().unwrap());
        assert!(matches!(sketch, Sketch::Dense(_)));
        let estimate = sketch.estimate();
        assert!(
            (estimate - EXACT_LIMIT as i64 - 1).abs() <= 10,
            "{estimate}"
        );
    }

    #[test]
    fn merging_is_a_union_and_idempotent() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        for hash in hashes(3, 600) {
            a.insert(hash);
        }
        for hash in hashes(3, 900) {
            b.insert(hash);
        }
        a.merge(&b);
        assert_eq!(a.estimate(), 900);
        let once = a.clone();
        a.merge(&b);
        assert_eq!(a, once, "merging twice is merging once");

        let mut big = Sketch::default();
        for hash in hashes(4, 50_000) {
            big.insert(hash);
        }
        let mut merged = big.clone();
        merged.merge(&a);
        merged.merge(&a);
        let estimate = merged.estimate() as f64;
        assert!((estimate / 50_900.0 - 1.0).abs() < 0.03, "{estimate}");
    }

    #[test]
    fn the_record_form_reads_back_and_foreign_bytes_are_refused() {
        let mut sketch = Sketch::default();
        for hash in hashes(5, 10) {
            sketch.insert(hash);
        }
        assert_eq!(Sketch::from_bytes(&sketch.to_bytes()), Some(sketch.clone()));
        for hash in hashes(6, 5_000) {
            sketch.insert(hash);
        }
        assert_eq!(sketch.to_bytes().len(), 1 + REGISTERS);
        assert_eq!(Sketch::from_bytes(&sketch.to_bytes()), Some(sketch));
        assert_eq!(Sketch::from_bytes(&[]), None);
        assert_eq!(Sketch::from_bytes(&[9, 1, 2]), None);
        assert_eq!(Sketch::from_bytes(&[EXACT_TAG, 1, 2, 3]), None);
    }

    #[test]
    fn a_visitor_is_its_address_agent_and_counter_under_the_days_salt() {
        let counter = CounterId::new("site", "page");
        let other = CounterId::new("site", "other");
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let h = |salt: &[u8], addr, ua: &str, c| visitor_hash(salt, addr, ua.as_bytes(), c);
        let base = h(b"salt-1", a, "curl", &counter);
        assert_eq!(base, h(b"salt-1", a, "curl", &counter));
        assert_ne!(base, h(b"salt-1", b, "curl", &counter));
        assert_ne!(base, h(b"salt-1", a, "wget", &counter));
        assert_ne!(base, h(b"salt-1", a, "curl", &other));
        assert_ne!(base, h(b"salt-2", a, "curl", &counter));
    }

    #[test]
    fn seen_forgets_at_a_new_day_and_when_full() {
        let counter = CounterId::new("site", "page");
        let visits = |day, hashes: Vec<u64>| DayVisits {
            counter: counter.clone(),
            day,
            hashes,
        };
        let mut seen = Seen::default();
        seen.note(&[visits(10, vec![1, 2])]);
        assert!(seen.contains(&Visit { day: 10, hash: 1 }));
        assert!(!seen.contains(&Visit { day: 11, hash: 1 }));
        seen.note(&[visits(11, vec![3])]);
        assert!(!seen.contains(&Visit { day: 10, hash: 1 }));
        seen.note(&[visits(11, hashes(7, SEEN_LIMIT).collect())]);
        assert!(
            !seen.contains(&Visit { day: 11, hash: 3 }),
            "emptied when full"
        );
        assert!(seen.hashes.len() <= SEEN_LIMIT);
    }
}
