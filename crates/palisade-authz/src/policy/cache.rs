//! A small bounded map of things built once and shared by many calls (a principal's entity, a tool's).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

/// At most `limit` entries; inserting into a full cache empties it first.
/// Clearing rather than evicting one by one keeps it simple and correct: an
/// entry is only ever a copy of what would be rebuilt from its key, so
/// losing one costs a rebuild, never a wrong answer. Lookups take the read
/// lock, so concurrent calls do not wait on each other.
pub(super) struct Cache<K, V> {
    map: RwLock<HashMap<K, V>>,
    limit: usize,
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are principals and targets: their count is all worth showing.
        f.debug_struct("Cache")
            .field("entries", &self.len())
            .field("limit", &self.limit)
            .finish()
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            limit,
        }
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(super) fn insert(&self, key: K, value: V) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.limit && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }
}

impl<K, V> Cache<K, V> {
    pub(super) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_limit() {
        let cache = Cache::new(3);
        for i in 0..10 {
            cache.insert(i, i * 2);
            assert!(cache.len() <= 3, "{} entries after {i}", cache.len());
            assert_eq!(cache.get(&i), Some(i * 2));
        }
        // Replacing a present key in a full cache keeps the others.
        let cache = Cache::new(2);
        cache.insert(1, 1);
        cache.insert(2, 2);
        cache.insert(2, 3);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(1), Some(3)));
        assert_eq!(cache.get(&9), None);
    }
}
