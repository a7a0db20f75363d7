//! Formatted listings kept for reuse by the helper threads: a directory listed again with the
//! same options is sent from memory, without reading or `lstat`ing its entries again.
//!
//! - **Key**: the directory's [`DirVersion`] (device, inode, mtime and ctime to the nanosecond),
//!   which changes whenever an entry is created, removed or renamed by anyone, plus everything
//!   else the bytes depend on: the format, the MLSD facts, the `perm` fact's write rights and
//!   which entries show.
//! - **Our own writes** (uploads, deletes, renames, mkdir/rmdir, SITE CHMOD, MFMT) empty the
//!   cache, so a client always lists what it just did, including an in-place APPE whose
//!   directory does not change.
//! - **Changes made outside the server** to an entry's content or attributes (a file appended
//!   to in place, a chmod) leave the directory's times alone: they show once the entry is older
//!   than the TTL (`listing_cache_secs`; 0 turns the cache off).
//! - **Bounded**: at most [`MAX_BYTES`] and [`MAX_ENTRIES`] listings in all, [`MAX_ENTRY_BYTES`]
//!   per listing (larger ones are never kept), oldest first out. Only data-connection listings use it; `STAT <dir>` does not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::command::ListFormat;
use crate::proto::listing::{Facts, Visibility};
use crate::vfs::DirVersion;

/// Memory all kept listings may take together.
pub const MAX_BYTES: usize = 32 << 20;
/// A listing larger than this is not kept (a 10,000-entry LIST is about 650 KB).
pub const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Listings kept at most (however small).
pub const MAX_ENTRIES: usize = 4096;

/// What a listing's bytes depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The served root the listing was made under (its device and inode): link targets show
    /// only where they stay inside it, so the same directory may list differently under another.
    pub root: (u64, u64),
    pub dir: DirVersion,
    pub format: ListFormat,
    pub facts: Facts,
    pub writable: bool,
    pub show: Visibility,
}

struct Kept {
    bytes: Arc<Vec<u8>>,
    at: Instant,
}

#[derive(Default)]
struct State {
    kept: HashMap<Key, Kept>,
    /// Insertion order, for eviction (a key may appear after its entry was replaced or dropped).
    order: VecDeque<Key>,
    bytes: usize,
}

#[derive(Default)]
pub struct ListCache {
    state: Mutex<State>,
}

impl ListCache {
    /// The listing kept for `key` if it is younger than `ttl`.
    pub fn get(&self, key: &Key, ttl: Duration, now: Instant) -> Option<Arc<Vec<u8>>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .kept
            .get(key)
            .filter(|k| now.saturating_duration_since(k.at) < ttl)
            .map(|k| Arc::clone(&k.bytes))
    }

    /// Keep `bytes` for `key` (made at `at`, when the listing started), evicting the oldest
    /// listings while over [`MAX_BYTES`] or [`MAX_ENTRIES`].
    pub fn put(&self, key: Key, bytes: Vec<u8>, at: Instant) {
        if bytes.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let len = bytes.len();
        if let Some(old) = state.kept.insert(
            key,
            Kept {
                bytes: Arc::new(bytes),
                at,
            },
        ) {
            state.bytes -= old.bytes.len();
        }
        state.bytes += len;
        state.order.push_back(key);
        while state.bytes > MAX_BYTES || state.kept.len() > MAX_ENTRIES {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            // Only the newest occurrence of a key in `order` owns its entry.
            if state.order.contains(&oldest) {
                continue;
            }
            if let Some(gone) = state.kept.remove(&oldest) {
                state.bytes -= gone.bytes.len();
            }
        }
        // `order` holds at most one stale key per put since the last eviction pass.
        if state.order.len() > 2 * state.kept.len() + 64 {
            let State { kept, order, .. } = &mut *state;
            order.retain(|k| kept.contains_key(k));
        }
    }

    /// Forget everything (the server changed a file or directory).
    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.kept.clear();
        state.order.clear();
        state.bytes = 0;
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> Key {
        Key {
            root: (1, 2),
            dir: DirVersion {
                dev: 1,
                ino,
                mtime: (10, 0),
                ctime: (10, 0),
            },
            format: ListFormat::List,
            facts: Facts::default(),
            writable: false,
            show: Visibility::EVERY_ENTRY,
        }
    }

    #[test]
    fn a_kept_listing_lives_for_its_ttl_and_only_under_its_own_key() {
        let c = ListCache::default();
        let t0 = Instant::now();
        c.put(key(1), b"a\r\n".to_vec(), t0);
        let ttl = Duration::from_secs(2);
        assert_eq!(c.get(&key(1), ttl, t0).unwrap().as_slice(), b"a\r\n");
        assert!(c.get(&key(2), ttl, t0).is_none());
        let other_format = Key {
            format: ListFormat::Nlst,
            ..key(1)
        };
        assert!(c.get(&other_format, ttl, t0).is_none());
        let changed = Key {
            dir: DirVersion {
                mtime: (10, 1),
                ..key(1).dir
            },
            ..key(1)
        };
        assert!(c.get(&changed, ttl, t0).is_none(), "the directory changed");
        assert!(c.get(&key(1), ttl, t0 + ttl).is_none(), "too old");
        assert!(c.get(&key(1), Duration::ZERO, t0).is_none(), "off");
        c.clear();
        assert!(c.get(&key(1), ttl, t0).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn memory_stays_bounded_oldest_out() {
        let c = ListCache::default();
        let t0 = Instant::now();
        let big = MAX_ENTRY_BYTES;
        assert!(MAX_BYTES / big >= 2);
        for i in 0..(MAX_BYTES / big + 3) as u64 {
            c.put(key(i), vec![b'x'; big], t0);
            assert!(c.bytes() <= MAX_BYTES);
        }
        let ttl = Duration::from_secs(60);
        assert!(c.get(&key(0), ttl, t0).is_none(), "the oldest went first");
        let last = (MAX_BYTES / big + 2) as u64;
        assert!(c.get(&key(last), ttl, t0).is_some());
        c.put(key(99), vec![b'x'; MAX_ENTRY_BYTES + 1], t0);
        assert!(c.get(&key(99), ttl, t0).is_none(), "too large to keep");
        // Replacing an entry accounts for the old bytes.
        let before = c.bytes();
        c.put(key(last), vec![b'y'; 10], t0);
        assert_eq!(c.bytes(), before - big + 10);
    }
}
