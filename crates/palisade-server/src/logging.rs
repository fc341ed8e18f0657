//! palisade's own log lines, through the redaction seam on their way to stderr.

use std::io::Write;

use palisade_core::RedactionSeam;
use tracing_subscriber::fmt::MakeWriter;

/// Makes one writer per log event; each writes its whole line, redacted, to
/// stderr when the event is done.
#[derive(Debug, Clone)]
pub struct RedactedStderr {
    seam: RedactionSeam,
}

impl RedactedStderr {
    pub fn new(seam: RedactionSeam) -> Self {
        Self { seam }
    }
}

/// One log line being written.
#[derive(Debug)]
pub struct Line {
    seam: RedactionSeam,
    buffer: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let clean = self.seam.text(&text);
        let _ = std::io::stderr().lock().write_all(clean.get().as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            seam: self.seam.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::{Arc, Mutex};

    use palisade_core::Redactor;

    use super::*;

    #[derive(Debug)]
    struct Hunter2(Arc<Mutex<Vec<String>>>);

    impl Redactor for Hunter2 {
        fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
            self.0.lock().unwrap().push(text.to_owned());
            Cow::Owned(text.replace("hunter2", "***"))
        }
    }

    #[test]
    fn a_log_line_passes_the_seam_whole() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let make = RedactedStderr::new(RedactionSeam::new(Arc::new(Hunter2(Arc::clone(&seen)))));
        {
            let mut line = make.make_writer();
            line.write_all(b"password=hun").unwrap();
            line.write_all(b"ter2\n").unwrap();
        }
        // The redactor saw the line whole, not its pieces: a secret split
        // across writes is still found.
        assert_eq!(*seen.lock().unwrap(), ["password=hunter2\n"]);
    }
}
