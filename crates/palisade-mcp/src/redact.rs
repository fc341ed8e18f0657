//! How an MCP message passes the redaction seam: every JSON value it carries, and an error's text.

use palisade_core::{Redactable, Redactor};

use crate::jsonrpc::{Message, Response};

impl Redactable for Message {
    fn redact_with(&mut self, redactor: &dyn Redactor) {
        match self {
            Message::Request(request) => {
                if let Some(params) = &mut request.params {
                    redactor.redact_value(params);
                }
            }
            Message::Notification(notification) => {
                if let Some(params) = &mut notification.params {
                    redactor.redact_value(params);
                }
            }
            Message::Response(response) => response.redact_with(redactor),
        }
    }
}

impl Redactable for Response {
    fn redact_with(&mut self, redactor: &dyn Redactor) {
        match &mut self.outcome {
            Ok(result) => redactor.redact_value(result),
            Err(error) => {
                error.message.redact_with(redactor);
                if let Some(data) = &mut error.data {
                    redactor.redact_value(data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use palisade_core::RedactionSeam;

    use super::*;

    #[derive(Debug)]
    struct Hunter2;

    impl Redactor for Hunter2 {
        fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
            Cow::Owned(text.replace("hunter2", "***"))
        }
    }

    #[test]
    fn every_part_of_a_message_is_redacted() {
        let seam = RedactionSeam::new(Arc::new(Hunter2));
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"hunter2"}}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":["hunter2"]}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"hunter2":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"pw hunter2","data":{"k":"hunter2"}}}"#,
        ] {
            let message = Message::parse(text.as_bytes()).unwrap();
            let clean = seam.apply(message).into_inner().to_bytes();
            let clean = String::from_utf8(clean).unwrap();
            assert!(!clean.contains("hunter2"), "{clean}");
        }
    }
}
