//! Newline-delimited framing for the stdio transport, with a hard size limit.
//!
//! MCP over stdio is one JSON-RPC message per line. A peer that sends a line
//! longer than the limit gets a specific error for that line, and reading
//! resumes at the next line: one oversized message never costs the
//! connection, and never costs memory beyond the limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads lines of at most `limit` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    line: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            line: Vec::new(),
        }
    }

    /// The next non-empty line without its terminator, or `None` at end of input.
    pub async fn next_line(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            match self.read_one().await {
                Ok(Some(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(line)) => return Some(Ok(line)),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    async fn read_one(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.line.clear();
        let mut oversized = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // End of input: a final unterminated line still counts.
                return match (oversized, self.line.is_empty()) {
                    (true, _) => Err(FrameError::TooLarge { limit: self.limit }),
                    (false, true) => Ok(None),
                    (false, false) => Ok(Some(std::mem::take(&mut self.line))),
                };
            }
            let (chunk, found_newline) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (available.get(..at).unwrap_or_default(), true),
                None => (available, false),
            };
            let consumed = chunk.len() + usize::from(found_newline);
            if !oversized {
                if self.line.len() + chunk.len() > self.limit {
                    oversized = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if found_newline {
                if oversized {
                    return Err(FrameError::TooLarge { limit: self.limit });
                }
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(Some(std::mem::take(&mut self.line)));
            }
        }
    }
}

/// Writes one message as one line and flushes it.
pub async fn write_line<W: AsyncWrite + Unpin>(out: &mut W, message: &[u8]) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(message.len() + 1);
    line.extend_from_slice(message);
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<Result<String, String>> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), limit);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await {
            out.push(
                line.map(|l| String::from_utf8(l).unwrap())
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_across_buffer_boundaries() {
        let got = lines(b"{\"a\":1}\n\n{\"b\":22}\r\nlast", 100).await;
        assert_eq!(
            got,
            vec![
                Ok("{\"a\":1}".into()),
                Ok("{\"b\":22}".into()),
                Ok("last".into())
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_line_is_an_error_and_reading_resumes() {
        let got = lines(b"0123456789ABCDEF\nok\n0123456789", 8).await;
        assert_eq!(
            got,
            vec![
                Err("message exceeds the 8-byte limit".into()),
                Ok("ok".into()),
                Err("message exceeds the 8-byte limit".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_exactly_at_the_limit_passes() {
        assert_eq!(lines(b"12345678\n", 8).await, vec![Ok("12345678".into())]);
    }
}
