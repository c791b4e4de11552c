//! Event uids seen recently: to fold repeats into their span and to drop re-deliveries.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_128;

use super::ids::SpanId;
use super::time::Timestamp;

/// An event's uid as the table keys it, hashed once when the event arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventKey(u128);

impl EventKey {
    /// By namespace and uid: an Event of one namespace never folds into another's.
    pub fn of(namespace: &str, uid: &str) -> EventKey {
        super::ids::with_joined(&[namespace.as_bytes(), b"/", uid.as_bytes()], |b| {
            EventKey(xxh3_128(b))
        })
    }

    /// The hash itself, as a checkpoint stores it.
    pub fn raw(self) -> u128 {
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Track {
    pub span: SpanId,
    pub count: u32,
    pub last: Timestamp,
    touched: Timestamp,
}

/// When a tracked uid's time is up, and its key in halves: a `u128` is aligned to 16 bytes, which
/// would make each entry 32 bytes instead of 24 (the queue holds one per tracked event).
type Expiry = (Timestamp, [u64; 2]);

fn halves(key: u128) -> [u64; 2] {
    [(key >> 64) as u64, key as u64]
}

fn joined([high, low]: [u64; 2]) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

pub(crate) struct TrackedEvents {
    map: FxHashMap<u128, Track>,
    expiry: VecDeque<Expiry>,
    ttl: Duration,
    cap: usize,
    pub evicted: u64,
}

impl TrackedEvents {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        TrackedEvents {
            map: FxHashMap::default(),
            expiry: VecDeque::new(),
            ttl,
            cap,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, key: EventKey) -> Option<Track> {
        self.map.get(&key.0).copied()
    }

    pub fn record(
        &mut self,
        EventKey(key): EventKey,
        span: SpanId,
        count: u32,
        last: Timestamp,
        now: Timestamp,
    ) {
        let track = Track {
            span,
            count,
            last,
            touched: now,
        };
        if self.map.insert(key, track).is_none() {
            if self.map.len() > self.cap {
                self.evict_oldest();
            }
            crate::queue::reserve_one(&mut self.expiry, self.cap + 1);
            self.expiry
                .push_back((now.saturating_add(self.ttl), halves(key)));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((_, key)) = self.expiry.pop_front() {
            if self.map.remove(&joined(key)).is_some() {
                self.evicted += 1;
                return;
            }
        }
    }

    pub fn expire(&mut self, now: Timestamp) {
        while let Some(&(at, key)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if let Some(track) = self.map.get(&joined(key)) {
                let due = track.touched.saturating_add(self.ttl);
                if due > now {
                    self.expiry.push_back((due, key));
                } else {
                    self.map.remove(&joined(key));
                }
            }
        }
    }
}
