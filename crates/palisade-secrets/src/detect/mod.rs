//! Detection rules for secrets palisade was never told about (being written; see the secrets issue).

/// One secret-looking span that a rule found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Byte offsets of the secret itself (not of a surrounding `password=`).
    pub start: usize,
    pub end: usize,
    /// The rule's kind, stable and kebab-case (`github-pat`, `aws-access-key`).
    pub kind: &'static str,
}

/// The default rule set, compiled once.
#[derive(Debug, Default)]
pub struct Detector {}

impl Detector {
    pub fn new() -> Self {
        Self {}
    }

    /// Every detection in `text`, sorted by start, not overlapping.
    pub fn find(&self, _text: &str) -> Vec<Detection> {
        Vec::new()
    }
}
