//! What untrusted results said, per session, so that an argument repeating it (text smuggled out through an allowed URL) is recognized.
//!
//! Only hashes of three-word shingles are kept, bounded per session and in
//! the number of sessions (the oldest go first); the text itself is not.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use palisade_core::SessionId;

/// Shingles kept per session.
const PER_SESSION: usize = 8192;
/// Sessions remembered.
const SESSIONS: usize = 1024;
/// Words per shingle.
const WIDTH: usize = 3;

#[derive(Debug, Default)]
pub struct SessionMemory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Shingles>,
    order: VecDeque<String>,
}

#[derive(Debug, Default)]
struct Shingles {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl SessionMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers the shingles of `texts` for `session`.
    pub fn remember(&self, session: &SessionId, texts: &[String]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = session.as_str().to_owned();
        if !inner.sessions.contains_key(&key) {
            if inner.order.len() >= SESSIONS
                && let Some(oldest) = inner.order.pop_front()
            {
                inner.sessions.remove(&oldest);
            }
            inner.order.push_back(key.clone());
        }
        let shingles = inner.sessions.entry(key).or_default();
        for text in texts {
            for hash in shingles_of(text) {
                if shingles.set.insert(hash) {
                    shingles.order.push_back(hash);
                    if shingles.order.len() > PER_SESSION
                        && let Some(old) = shingles.order.pop_front()
                    {
                        shingles.set.remove(&old);
                    }
                }
            }
        }
    }

    /// The first run of words in `text` that an untrusted result of
    /// `session` also held, if any.
    pub fn echoes(&self, session: &SessionId, text: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let shingles = inner.sessions.get(session.as_str())?;
        let words = words(text);
        words
            .windows(WIDTH)
            .find_map(|w| shingles.set.contains(&hash(w)).then(|| w.join(" ")))
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect()
}

fn hash(words: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    words.hash(&mut h);
    h.finish()
}

fn shingles_of(text: &str) -> Vec<u64> {
    words(text).windows(WIDTH).map(hash).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_of_untrusted_text_is_found_in_its_session_only() {
        let memory = SessionMemory::new();
        let a = SessionId::new("a");
        memory.remember(&a, &["The merger closes on Friday at noon.".to_owned()]);
        assert_eq!(
            memory.echoes(&a, "q=merger+closes+on+friday").as_deref(),
            Some("merger closes on")
        );
        assert_eq!(memory.echoes(&a, "q=weather+in+paris"), None);
        assert_eq!(
            memory.echoes(&SessionId::new("b"), "merger closes on friday"),
            None
        );
    }

    #[test]
    fn memory_is_bounded() {
        let memory = SessionMemory::new();
        for i in 0..(SESSIONS + 10) {
            memory.remember(
                &SessionId::new(format!("s{i}")),
                &["one two three".to_owned()],
            );
        }
        assert_eq!(memory.echoes(&SessionId::new("s0"), "one two three"), None);
        assert!(
            memory
                .echoes(
                    &SessionId::new(format!("s{}", SESSIONS + 9)),
                    "one two three"
                )
                .is_some()
        );
    }
}
