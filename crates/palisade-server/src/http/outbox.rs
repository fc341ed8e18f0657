//! Where a session's messages to an HTTP client go: the stream of the request
//! they belong to, else the client's GET stream.

use std::collections::HashMap;
use std::sync::Mutex;

use palisade_core::Redacted;
use palisade_mcp::{Message, RequestId};
use tokio::sync::mpsc;

use crate::session::Outbox;
use crate::upstream::lock;

/// Delivers messages to the stream of the request they belong to, else to the
/// GET stream. Until the client opens that, a few messages wait for it: what
/// an upstream says right after its handshake (a `list_changed`, say) is sent
/// before any client can have opened one.
#[derive(Default)]
pub(super) struct HttpOutbox {
    pub(super) streams: Mutex<HashMap<RequestId, mpsc::Sender<Redacted<Message>>>>,
    pub(super) standalone: Mutex<Option<mpsc::Sender<Redacted<Message>>>>,
    pub(super) backlog: Mutex<Vec<Redacted<Message>>>,
}

/// Messages kept for a GET stream not yet opened.
const BACKLOG: usize = 64;

impl Outbox for HttpOutbox {
    fn send(&self, message: Redacted<Message>, related: Option<&RequestId>) -> bool {
        let on_request = related.and_then(|id| lock(&self.streams).get(id).cloned());
        let target = match on_request {
            Some(stream) => stream,
            None => {
                let standalone = lock(&self.standalone);
                match standalone.as_ref() {
                    Some(stream) => stream.clone(),
                    // Only notifications wait: a request must be refused at
                    // once, not left for a stream that may never open. The
                    // GET lock is held so that one opening cannot miss this.
                    None if matches!(message.get(), Message::Notification(_)) => {
                        let mut backlog = lock(&self.backlog);
                        if backlog.len() < BACKLOG {
                            backlog.push(message);
                            return true;
                        }
                        return false;
                    }
                    None => {
                        tracing::debug!("no open stream to the client; dropped a message to it");
                        return false;
                    }
                }
            }
        };
        let stream = target;
        let queued = stream.try_send(message).is_ok();
        if !queued {
            tracing::warn!("client stream is full or closed; dropped a message to it");
        }
        queued
    }
}
