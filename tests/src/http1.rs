//! HTTP/1.1 on the wire, small enough to read: the client tests send with and the server
//! loop the upstream and the echo binary answer with. Headers keep the order and case they
//! had on the wire, so a test sees exactly what Envoy sent.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::RigError;

/// A header as it was on the wire: name and value.
pub type Header = (String, String);

/// How long a client request may take, connection to last body byte.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request or response head either side accepts.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers either side parses in one head.
const MAX_HEADERS: usize = 128;

/// An HTTP request: sent by a test, or received by the upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The headers in order.
    pub headers: Vec<Header>,
    /// Headers whose values are raw bytes (obs-text 0x80-0xFF that is not UTF-8), sent
    /// after `headers`. Only a test's request has them; a received request never does.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// An HTTP response: received by a test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order.
    pub headers: Vec<Header>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with this method and path and no headers or body.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            ..Request::default()
        }
    }
    /// A `GET` of `path`.
    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }
    /// A `POST` to `path`, with no body until `with_body` gives one (as in the harness).
    pub fn post(path: &str) -> Self {
        Request::new("POST", path)
    }
    /// Adds a header (after those already there).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Adds a header whose value is sent byte for byte (after the text headers).
    pub fn with_raw_header(mut self, name: &str, value: &[u8]) -> Self {
        self.raw_headers.push((name.to_owned(), value.to_vec()));
        self
    }
    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all(&self.headers, name)
    }
    /// The same as [`header`](Self::header), spelt as the harness's `header_value`, so a
    /// test reads the same in both.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.header(name)
    }
    /// The method, as the harness's `Request::method()` gives it.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The path and query, as the harness's `Request::path()` gives it.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The body bytes, as the harness spells it.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }
    /// The body as text (invalid UTF-8 replaced), as the harness spells it.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all(&self.headers, name)
    }
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The status code, as the harness's `Response::status()` gives it.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The same as [`header`](Self::header), spelt as the harness's `header_value`, so a
    /// test reads the same in both.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.header(name)
    }
    /// The body bytes, as the harness spells it.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }
    /// The same as [`text`](Self::text), spelt as the harness's `body_text`.
    pub fn body_text(&self) -> String {
        self.text()
    }
}

fn first<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn all<'a>(headers: &'a [Header], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Sends `request` to `addr` on a new connection and reads the whole response.
///
/// Adds `host` when the request has none, and `content-length` when it has a body or a
/// method that carries one. The connection is closed after the response.
pub async fn send(addr: SocketAddr, request: &Request) -> Result<Response, RigError> {
    let doing = format!("{} {} to {addr}", request.method, request.path);
    match tokio::time::timeout(CLIENT_TIMEOUT, exchange(addr, request, &doing)).await {
        Ok(result) => result,
        Err(_) => Err(RigError::Timeout {
            doing,
            waited: CLIENT_TIMEOUT,
        }),
    }
}

async fn exchange(addr: SocketAddr, request: &Request, doing: &str) -> Result<Response, RigError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(RigError::io(format!("connecting for {doing}")))?;
    let mut wire = Wire::new(stream);
    wire.write(&encode_request(request, addr))
        .await
        .map_err(RigError::io(format!("writing {doing}")))?;
    let http_error = |message: String| RigError::Http {
        doing: doing.to_owned(),
        message,
    };
    loop {
        let head = wire
            .head()
            .await
            .map_err(RigError::io(format!("reading the response to {doing}")))?
            .ok_or_else(|| http_error("connection closed before a response".into()))?;
        let (status, headers) = parse_response_head(&head).map_err(http_error)?;
        // An interim response (100 Continue) is followed by the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let framing =
            if request.method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
                Framing::Empty
            } else {
                framing(&headers)
                    .map_err(http_error)?
                    .unwrap_or(Framing::UntilClose)
            };
        let body = wire.body(framing).await.map_err(RigError::io(format!(
            "reading the response body to {doing}"
        )))?;
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

fn encode_request(request: &Request, addr: SocketAddr) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.path).into_bytes();
    if request.header("host").is_none() {
        out.extend_from_slice(format!("host: {addr}\r\n").as_bytes());
    }
    let bodiless = ["GET", "HEAD", "DELETE", "OPTIONS"]
        .iter()
        .any(|m| request.method.eq_ignore_ascii_case(m));
    let framed =
        request.header("content-length").is_some() || request.header("transfer-encoding").is_some();
    if !framed && (!request.body.is_empty() || !bodiless) {
        out.extend_from_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    for (name, value) in &request.raw_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    encode_headers(&mut out, &request.headers);
    out.extend_from_slice(&request.body);
    out
}

fn encode_headers(out: &mut Vec<u8>, headers: &[Header]) {
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Encodes a response with these parts, adding `content-length` unless the headers frame
/// the body themselves.
pub fn encode_response(status: u16, headers: &[Header], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    let framed =
        first(headers, "content-length").is_some() || first(headers, "transfer-encoding").is_some();
    if !framed {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    encode_headers(&mut out, headers);
    out.extend_from_slice(body);
    out
}

/// A reason phrase; peers ignore it, but a readable one helps when reading a capture.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// What a handler tells the server loop to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes (from [`encode_response`]) and keep the connection open.
    Send(Vec<u8>),
    /// Close the connection without answering.
    Drop,
}

/// Accepts connections on `listener` until the returned future is dropped, answering each
/// request with `handler`. Dropping the future also closes every open connection.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let handler = Arc::new(handler);
    // Owning the connection tasks here means they are aborted when this future is dropped.
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        // An accept error (for example too many open files) is transient; the next
        // accept may succeed, and the test will see its requests fail if not.
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let handler = Arc::clone(&handler);
        connections.spawn(async move {
            let mut wire = Wire::new(stream);
            // A connection that breaks ends its task; the test sees that as a failed
            // request on its side, so there is nothing to report here.
            while let Ok(Some(request)) = wire.request().await {
                match handler(request).await {
                    Answer::Send(bytes) => {
                        if wire.write(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Answer::Drop => break,
                }
            }
        });
    }
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The framing the headers declare, if any.
fn framing(headers: &[Header]) -> Result<Option<Framing>, String> {
    if let Some(te) = first(headers, "transfer-encoding") {
        if te.to_ascii_lowercase().contains("chunked") {
            return Ok(Some(Framing::Chunked));
        }
    }
    match first(headers, "content-length") {
        Some(len) => len
            .trim()
            .parse()
            .map(|n| Some(Framing::Length(n)))
            .map_err(|_| format!("bad content-length {len:?}")),
        None => Ok(None),
    }
}

fn parse_response_head(head: &[u8]) -> Result<(u16, Vec<Header>), String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete response head".into()),
        Err(e) => return Err(format!("bad response head: {e}")),
    }
    let status = parsed.code.ok_or("response head without a status")?;
    Ok((status, collect_headers(parsed.headers)))
}

fn collect_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_owned(), value)
        })
        .collect()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A connection with a read buffer.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// The next head, through its blank line, or `None` at a clean end of stream.
    async fn head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..end + 4).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid(format!("head longer than {MAX_HEAD} bytes")));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The next line, without its CRLF.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..end + 2).collect();
                line.truncate(end);
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn body(&mut self, framing: Framing) -> io::Result<Vec<u8>> {
        match framing {
            Framing::Empty => Ok(Vec::new()),
            Framing::Length(n) => self.take(n).await,
            Framing::UntilClose => {
                while self.fill().await? > 0 {}
                Ok(std::mem::take(&mut self.buf))
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let line = self.line().await?;
                    let text = String::from_utf8_lossy(&line);
                    let size = text.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("bad chunk size {text:?}")))?;
                    if size == 0 {
                        // Trailers, if any, end with an empty line.
                        while !self.line().await?.is_empty() {}
                        return Ok(body);
                    }
                    body.extend(self.take(size).await?);
                    self.take(2).await?;
                }
            }
        }
    }

    /// The next request, or `None` when the peer closed the connection between requests.
    async fn request(&mut self) -> io::Result<Option<Request>> {
        let Some(head) = self.head().await? else {
            return Ok(None);
        };
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(invalid("incomplete head".into())),
            Err(e) => return Err(invalid(format!("bad request head: {e}"))),
        }
        let headers = collect_headers(parsed.headers);
        let framing = framing(&headers)
            .map_err(invalid)?
            .unwrap_or(Framing::Empty);
        let request = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            path: parsed.path.unwrap_or_default().to_owned(),
            headers,
            raw_headers: Vec::new(),
            body: Vec::new(),
        };
        let body = self.body(framing).await?;
        Ok(Some(Request { body, ..request }))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, |request: Request| async move {
            let headers = vec![
                ("x-method".to_owned(), request.method.clone()),
                ("x-path".to_owned(), request.path.clone()),
                ("X-Mixed-Case".to_owned(), "kept".to_owned()),
                ("set-cookie".to_owned(), "a=1".to_owned()),
                ("set-cookie".to_owned(), "b=2".to_owned()),
            ];
            Answer::Send(encode_response(201, &headers, &request.body))
        }));
        addr
    }

    #[tokio::test]
    async fn a_request_round_trips_with_headers_in_order() {
        let addr = echo_server().await;
        let response = send(addr, &Request::post("/p?q=1").with_body("hello"))
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("x-method"), Some("POST"));
        assert_eq!(response.header("x-path"), Some("/p?q=1"));
        assert_eq!(response.header("x-mixed-case"), Some("kept"));
        assert_eq!(response.header_all("set-cookie"), vec!["a=1", "b=2"]);
        assert_eq!(response.text(), "hello");
    }

    #[tokio::test]
    async fn a_chunked_request_body_is_dechunked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, |request: Request| async move {
            Answer::Send(encode_response(200, &[], &request.body))
        }));
        let request = Request::post("/")
            .with_header("transfer-encoding", "chunked")
            .with_body("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n");
        let response = send(addr, &request).await.unwrap();
        assert_eq!(response.text(), "hello world");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error_not_a_response() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, |_request: Request| async { Answer::Drop }));
        let error = send(addr, &Request::get("/")).await.unwrap_err();
        assert!(error.to_string().contains("connection closed"), "{error}");
    }
}
