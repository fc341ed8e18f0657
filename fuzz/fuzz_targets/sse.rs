//! Fuzzes the SSE parser with input split at a fuzzer-chosen point: no panic, no event over the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_mcp::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(*split).min(rest.len());
    let (a, b) = rest.split_at(at);
    let mut parser = Parser::new(1024);
    for chunk in [a, b] {
        match parser.feed(chunk) {
            Ok(events) => assert!(events.iter().all(|e| e.data.len() <= 1024)),
            Err(_) => return,
        }
    }
});
