//! Property tests: no input makes a parser panic, and whatever parses serializes back to itself.

use palisade_mcp::framing::LineReader;
use palisade_mcp::{Message, sse};
use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON values of every shape, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that look like JSON-RPC messages, with every member possibly wrong.
fn message_like() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![Just(json!("2.0")), json_value()]),
        prop::option::of(json_value()),
        prop::option::of(prop_oneof![".{0,10}".prop_map(Value::String), json_value()]),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(version, id, method, params, result, error)| {
            let mut object = serde_json::Map::new();
            for (key, value) in [
                ("jsonrpc", version),
                ("id", id),
                ("method", method),
                ("params", params),
                ("result", result),
                ("error", error),
            ] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn what_parses_round_trips(value in message_like()) {
        if let Ok(message) = Message::from_value(value) {
            let bytes = message.to_bytes();
            let again = Message::parse(&bytes);
            prop_assert_eq!(again.map(|m| m.to_bytes()), Ok(bytes));
        }
    }

    #[test]
    fn sse_parser_never_panics_and_respects_its_limit(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
    ) {
        let mut parser = sse::Parser::new(256);
        for chunk in chunks {
            match parser.feed(&chunk) {
                Ok(events) => {
                    for event in events {
                        prop_assert!(event.data.len() <= 256);
                    }
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn line_reader_never_returns_more_than_its_limit(
        bytes in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2048),
        limit in 1usize..64,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(7, bytes.as_slice()), limit);
            while let Some(line) = reader.next_line().await {
                if let Ok(line) = line {
                    assert!(line.len() <= limit, "{} > {limit}", line.len());
                    assert!(!line.contains(&b'\n'));
                }
            }
        });
    }
}

#[test]
fn an_exponent_respelled_is_the_same_message() {
    let original = Message::parse(br#"{"jsonrpc":"2.0","method":"x","params":[1E400]}"#).unwrap();
    let again = Message::parse(&original.to_bytes()).unwrap();
    assert_eq!(again.to_bytes(), original.to_bytes());
}
