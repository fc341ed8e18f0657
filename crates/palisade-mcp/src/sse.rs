//! Server-sent events: encoding for the gateway's streams, parsing for remote upstreams.

/// One event: MCP uses the default `message` event with JSON in `data`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Encodes one `message` event. JSON-RPC messages are single-line JSON, but
/// any newline is still split into `data:` lines so the frame cannot be broken.
pub fn encode(id: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Incremental parser: feed it chunks as they arrive, take whole events out.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    current: Event,
    has_data: bool,
    limit: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("event stream is not UTF-8")]
    NotUtf8,
}

impl Parser {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        // Lines are read in place and the buffer drained once per chunk, so a
        // chunk of many short lines costs linear, not quadratic, time.
        let mut start = 0;
        let buffer = std::mem::take(&mut self.buffer);
        let outcome = loop {
            let rest = buffer.get(start..).unwrap_or_default();
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                break Ok(());
            };
            let line = rest.get(..end).unwrap_or_default();
            start += end + 1;
            if let Err(e) = self.line(line, &mut events) {
                break Err(e);
            }
        };
        self.buffer = buffer;
        self.buffer.drain(..start.min(self.buffer.len()));
        outcome?;
        if self.buffer.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(events)
    }

    fn line(&mut self, raw: &[u8], events: &mut Vec<Event>) -> Result<(), SseError> {
        let line = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.current));
                self.has_data = false;
            } else {
                self.current = Event::default();
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" => self.current.id = Some(value.to_owned()),
            // `retry` and unknown fields are ignored, as the SSE spec says.
            _ => {}
        }
        if self.current.data.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let stream = b": comment\nid: 7\nevent: message\ndata: {\"a\":\ndata: 1}\n\nretry: 5\ndata: two\r\n\r\n";
        for split in 0..stream.len() {
            let mut p = Parser::new(1024);
            let (a, b) = stream.split_at(split);
            let mut events = p.feed(a).unwrap();
            events.extend(p.feed(b).unwrap());
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(events[0].id.as_deref(), Some("7"));
            assert_eq!(events[0].data, "{\"a\":\n1}");
            assert_eq!(events[1].data, "two");
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let mut p = Parser::new(1024);
        let events = p
            .feed(encode(Some("3"), "line1\nline2").as_bytes())
            .unwrap();
        assert_eq!(
            events,
            vec![Event {
                event: None,
                id: Some("3".into()),
                data: "line1\nline2".into()
            }]
        );
    }

    #[test]
    fn a_chunk_of_many_events_parses_whole() {
        // Lines are drained once per chunk, not once per line, or this would crawl.
        let chunk = "data: x\n\n".repeat(200_000);
        let mut p = Parser::new(1024);
        assert_eq!(p.feed(chunk.as_bytes()).unwrap().len(), 200_000);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut p = Parser::new(8);
        assert_eq!(
            p.feed(b"data: 0123456789\n"),
            Err(SseError::TooLarge { limit: 8 })
        );
        let mut p = Parser::new(8);
        assert_eq!(
            p.feed(b"data: 0123456789"),
            Err(SseError::TooLarge { limit: 8 })
        );
    }
}
