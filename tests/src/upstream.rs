//! A local upstream server for Envoy tests: it records every request it receives, in the
//! order it received them, and answers as the test tells it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::http1::{self, Answer, Header, Request};
use crate::RigError;

/// How the upstream answers a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, in order (`content-length` is added unless set).
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Close the connection without answering.
    pub drop: bool,
}

impl Reply {
    /// Answers with `status`, no headers and no body.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            drop: false,
        }
    }
    /// The same as [`Reply::status`], spelt as the harness's `Response::new` (which the
    /// harness also calls `Reply`), so `Reply::new(200).with_header(..)` reads the same in
    /// both.
    pub fn new(status: u16) -> Self {
        Reply::status(status)
    }
    /// Answers `200` with body `ok`: what the upstream does until told otherwise.
    pub fn ok() -> Self {
        Reply::status(200).with_body("ok")
    }
    /// Closes the connection after reading the request, without answering.
    pub fn drop_connection() -> Self {
        Reply {
            drop: true,
            ..Reply::status(0)
        }
    }
    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// Waits `delay` before answering (or dropping).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug)]
struct State {
    received: Vec<Request>,
    queued: VecDeque<Reply>,
    standing: Reply,
}

/// A recording upstream on `127.0.0.1`. Dropping it stops it.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Option<JoinHandle<()>>,
}

/// The state stays usable after a panic elsewhere: it is plain data with no invariant a
/// half-finished update could break.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upstream {
    /// Starts an upstream on a free port; it answers [`Reply::ok`] until told otherwise.
    /// Must be called within a Tokio runtime.
    pub async fn start() -> Result<Self, RigError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(RigError::io("binding the upstream to 127.0.0.1:0"))?;
        let addr = listener
            .local_addr()
            .map_err(RigError::io("reading the upstream's address"))?;
        let state = Arc::new(Mutex::new(State {
            received: Vec::new(),
            queued: VecDeque::new(),
            standing: Reply::ok(),
        }));
        let mut upstream = Upstream {
            addr,
            state,
            server: None,
        };
        upstream.serve(listener);
        Ok(upstream)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        self.server = Some(tokio::spawn(http1::serve(listener, move |request| {
            let reply = {
                let mut state = lock(&state);
                state.received.push(request);
                let standing = state.standing.clone();
                state.queued.pop_front().unwrap_or(standing)
            };
            async move {
                tokio::time::sleep(reply.delay).await;
                if reply.drop {
                    Answer::Drop
                } else {
                    Answer::Send(http1::encode_response(
                        reply.status,
                        &reply.headers,
                        &reply.body,
                    ))
                }
            }
        })));
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers every later request with `reply` (after any queued replies).
    pub fn reply_with(&self, reply: Reply) {
        lock(&self.state).standing = reply;
    }

    /// Answers the next request with `reply`; queued replies are used in order, before the
    /// standing one.
    pub fn queue(&self, reply: Reply) {
        lock(&self.state).queued.push_back(reply);
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Request> {
        lock(&self.state).received.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        lock(&self.state).received.clear();
    }

    /// Stops listening and closes every open connection, so the port refuses connections.
    /// What was received is kept.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // Waiting for the aborted task means its sockets are closed on return. Its
            // result is the cancellation just asked for, so there is nothing to check.
            let _ = server.await;
        }
    }

    /// Listens again on the same port, after [`Upstream::stop`] or while running.
    pub async fn restart(&mut self) -> Result<(), RigError> {
        self.stop().await;
        let doing = format!("rebinding the upstream to {}", self.addr);
        let socket = TcpSocket::new_v4().map_err(RigError::io(doing.clone()))?;
        socket
            .set_reuseaddr(true)
            .map_err(RigError::io(doing.clone()))?;
        socket
            .bind(self.addr)
            .map_err(RigError::io(doing.clone()))?;
        let listener = socket.listen(1024).map_err(RigError::io(doing))?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_requests_and_answers_as_told() {
        let upstream = Upstream::start().await.unwrap();
        upstream.queue(Reply::status(503).with_header("x-first", "1"));
        upstream.reply_with(Reply::status(204));

        let first = http1::send(upstream.addr(), &Request::post("/a").with_body("body"))
            .await
            .unwrap();
        let second = http1::send(upstream.addr(), &Request::get("/b").with_header("x-k", "v"))
            .await
            .unwrap();

        assert_eq!((first.status, first.header("x-first")), (503, Some("1")));
        assert_eq!(second.status, 204);
        let received = upstream.received();
        assert_eq!(received.len(), 2);
        assert_eq!(
            (received[0].method.as_str(), received[0].body.as_slice()),
            ("POST", &b"body"[..])
        );
        assert_eq!(received[1].path, "/b");
        assert_eq!(received[1].header("x-k"), Some("v"));
    }

    #[tokio::test]
    async fn refuses_connections_while_stopped_and_answers_after_restart() {
        let mut upstream = Upstream::start().await.unwrap();
        upstream.stop().await;
        assert!(http1::send(upstream.addr(), &Request::get("/"))
            .await
            .is_err());

        upstream.restart().await.unwrap();
        let response = http1::send(upstream.addr(), &Request::get("/"))
            .await
            .unwrap();
        assert_eq!(response.text(), "ok");
    }
}
