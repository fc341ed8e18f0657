//! Fuzzes the JSON-RPC parser: no input panics, and whatever parses serializes to a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_mcp::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let bytes = message.to_bytes();
        let again = Message::parse(&bytes).map(|m| m.to_bytes());
        assert_eq!(again, Ok(bytes));
    }
});
