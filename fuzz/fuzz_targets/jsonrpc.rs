//! Fuzzes the JSON-RPC parser: no input panics, and whatever parses serializes back to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_mcp::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let again = Message::parse(&message.to_bytes());
        assert_eq!(again, Ok(message));
    }
});
