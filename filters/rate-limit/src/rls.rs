//! The Envoy Rate Limit Service protocol (`envoy.service.ratelimit.v3`), by hand: encoding
//! a `RateLimitRequest` and decoding a `RateLimitResponse` in the protobuf wire format,
//! with no generated code and no protoc. Decoding takes untrusted bytes: it skips fields it
//! does not know (every wire type, groups included), refuses truncated input and lengths
//! past the end, and never panics.

use std::time::Duration;

/// The gRPC service the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// Its one method.
pub const METHOD: &str = "ShouldRateLimit";

/// How deeply groups (a deprecated wire type) may nest inside a skipped field.
const MAX_GROUP_DEPTH: u32 = 32;

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitRequest {
    /// The domain the service's configuration is looked up in (field 1).
    pub domain: String,
    /// The descriptors (field 2), each a list of `(key, value)` entries.
    pub descriptors: Vec<Vec<(String, String)>>,
    /// How many hits the request adds (field 3); 0 is not sent, and the service reads 1.
    pub hits_addend: u32,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Code {
    /// 0: the service did not say.
    #[default]
    Unknown,
    /// 1: under the limit.
    Ok,
    /// 2: over the limit.
    OverLimit,
    /// A value this version of the protocol does not define.
    Other(u64),
}

impl Code {
    fn from_wire(n: u64) -> Code {
        match n {
            0 => Code::Unknown,
            1 => Code::Ok,
            2 => Code::OverLimit,
            other => Code::Other(other),
        }
    }

    fn to_wire(self) -> u64 {
        match self {
            Code::Unknown => 0,
            Code::Ok => 1,
            Code::OverLimit => 2,
            Code::Other(n) => n,
        }
    }
}

/// `RateLimitResponse.RateLimit`: the limit the service applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrentLimit {
    /// Requests per unit (field 1).
    pub requests_per_unit: u32,
    /// The unit (field 2): 1 second, 2 minute, 3 hour, 4 day, 5 month, 6 year.
    pub unit: u64,
    /// The limit's name (field 3).
    pub name: String,
}

/// `RateLimitResponse.DescriptorStatus`: the answer for one descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// The descriptor's code (field 1).
    pub code: Code,
    /// The limit that applied (field 2).
    pub current_limit: Option<CurrentLimit>,
    /// What is left in the current window (field 3).
    pub limit_remaining: u32,
    /// Time until the window resets (field 4, a `google.protobuf.Duration`).
    pub duration_until_reset: Option<Duration>,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`, the fields the filter uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitResponse {
    /// The answer over all descriptors (field 1).
    pub overall_code: Code,
    /// One status per descriptor (field 2).
    pub statuses: Vec<DescriptorStatus>,
    /// Headers for the response to the client (field 3).
    pub response_headers_to_add: Vec<(String, Vec<u8>)>,
    /// Headers for the request to the upstream (field 4).
    pub request_headers_to_add: Vec<(String, Vec<u8>)>,
    /// A body for a refusal (field 5); kept, not used.
    pub raw_body: Vec<u8>,
}

/// Why bytes are not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a field.
    Truncated,
    /// A length runs past the end of its message.
    LengthTooLong,
    /// A varint longer than ten bytes.
    BadVarint,
    /// Wire type 6 or 7, field number 0, or an unmatched end of group.
    BadTag,
    /// Groups nested deeper than the decoder follows.
    TooDeep,
    /// A string field that is not UTF-8.
    NotUtf8,
    /// A number out of the range of its field.
    OutOfRange,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "the message ends inside a field",
            DecodeError::LengthTooLong => "a length runs past the end of the message",
            DecodeError::BadVarint => "a varint is longer than ten bytes",
            DecodeError::BadTag => "a field tag is invalid",
            DecodeError::TooDeep => "groups nest too deeply",
            DecodeError::NotUtf8 => "a string field is not UTF-8",
            DecodeError::OutOfRange => "a number is out of its field's range",
        })
    }
}

// Encoding.

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Proto3 leaves out fields at their default.
fn put_uint(out: &mut Vec<u8>, field: u32, n: u64) {
    if n != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, n);
    }
}

fn put_string(out: &mut Vec<u8>, field: u32, text: &[u8]) {
    if !text.is_empty() {
        put_bytes(out, field, text);
    }
}

impl RateLimitRequest {
    /// The message in the protobuf wire format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, 1, self.domain.as_bytes());
        for descriptor in &self.descriptors {
            // envoy.extensions.common.ratelimit.v3.RateLimitDescriptor { entries = 1 }
            let mut d = Vec::new();
            for (key, value) in descriptor {
                let mut entry = Vec::new();
                put_string(&mut entry, 1, key.as_bytes());
                put_string(&mut entry, 2, value.as_bytes());
                put_bytes(&mut d, 1, &entry);
            }
            put_bytes(&mut out, 2, &d);
        }
        put_uint(&mut out, 3, u64::from(self.hits_addend));
        out
    }

    /// Reads a request (what a service would do; the tests check what the filter sent).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut request = RateLimitRequest::default();
        for field in Fields::new(bytes) {
            match field? {
                (1, Value::Len(b)) => request.domain = utf8(b)?,
                (2, Value::Len(b)) => {
                    let mut entries = Vec::new();
                    for field in Fields::new(b) {
                        if let (1, Value::Len(e)) = field? {
                            let (mut key, mut value) = (String::new(), String::new());
                            for field in Fields::new(e) {
                                match field? {
                                    (1, Value::Len(k)) => key = utf8(k)?,
                                    (2, Value::Len(v)) => value = utf8(v)?,
                                    _ => {}
                                }
                            }
                            entries.push((key, value));
                        }
                    }
                    request.descriptors.push(entries);
                }
                (3, Value::Varint(n)) => request.hits_addend = u32_of(n)?,
                _ => {}
            }
        }
        Ok(request)
    }
}

impl RateLimitResponse {
    /// Reads a service's answer.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut response = RateLimitResponse::default();
        for field in Fields::new(bytes) {
            match field? {
                (1, Value::Varint(n)) => response.overall_code = Code::from_wire(n),
                (2, Value::Len(b)) => response.statuses.push(descriptor_status(b)?),
                (3, Value::Len(b)) => response.response_headers_to_add.push(header_value(b)?),
                (4, Value::Len(b)) => response.request_headers_to_add.push(header_value(b)?),
                (5, Value::Len(b)) => response.raw_body = b.to_vec(),
                _ => {}
            }
        }
        Ok(response)
    }

    /// The message in the protobuf wire format (what a service sends; for tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_uint(&mut out, 1, self.overall_code.to_wire());
        for status in &self.statuses {
            let mut s = Vec::new();
            put_uint(&mut s, 1, status.code.to_wire());
            if let Some(limit) = &status.current_limit {
                let mut l = Vec::new();
                put_uint(&mut l, 1, u64::from(limit.requests_per_unit));
                put_uint(&mut l, 2, limit.unit);
                put_string(&mut l, 3, limit.name.as_bytes());
                put_bytes(&mut s, 2, &l);
            }
            put_uint(&mut s, 3, u64::from(status.limit_remaining));
            if let Some(reset) = status.duration_until_reset {
                let mut d = Vec::new();
                put_uint(&mut d, 1, reset.as_secs());
                put_uint(&mut d, 2, u64::from(reset.subsec_nanos()));
                put_bytes(&mut s, 4, &d);
            }
            put_bytes(&mut out, 2, &s);
        }
        for (field, headers) in [
            (3, &self.response_headers_to_add),
            (4, &self.request_headers_to_add),
        ] {
            for (key, value) in headers {
                let mut h = Vec::new();
                put_string(&mut h, 1, key.as_bytes());
                put_string(&mut h, 2, value);
                put_bytes(&mut out, field, &h);
            }
        }
        put_string(&mut out, 5, &self.raw_body);
        out
    }
}

fn descriptor_status(bytes: &[u8]) -> Result<DescriptorStatus, DecodeError> {
    let mut status = DescriptorStatus::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(n)) => status.code = Code::from_wire(n),
            (2, Value::Len(b)) => {
                let mut limit = CurrentLimit::default();
                for field in Fields::new(b) {
                    match field? {
                        (1, Value::Varint(n)) => limit.requests_per_unit = u32_of(n)?,
                        (2, Value::Varint(n)) => limit.unit = n,
                        (3, Value::Len(s)) => limit.name = utf8(s)?,
                        _ => {}
                    }
                }
                status.current_limit = Some(limit);
            }
            (3, Value::Varint(n)) => status.limit_remaining = u32_of(n)?,
            (4, Value::Len(b)) => status.duration_until_reset = Some(duration(b)?),
            _ => {}
        }
    }
    Ok(status)
}

/// `google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2; }`. A negative duration
/// reads as zero: the window has already reset.
fn duration(bytes: &[u8]) -> Result<Duration, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for field in Fields::new(bytes) {
        match field? {
            // Negative int64s are sent as their two's-complement varint.
            (1, Value::Varint(n)) => seconds = n as i64,
            (2, Value::Varint(n)) => nanos = i64::from(n as i32),
            _ => {}
        }
    }
    if !(-999_999_999..=999_999_999).contains(&nanos) {
        return Err(DecodeError::OutOfRange);
    }
    if seconds < 0 || nanos < 0 {
        return Ok(Duration::ZERO);
    }
    // Both are non-negative and nanos is under a second.
    Ok(Duration::new(
        seconds.unsigned_abs(),
        nanos.unsigned_abs() as u32,
    ))
}

/// `envoy.config.core.v3.HeaderValue { key = 1; value = 2; raw_value = 3 }`; `raw_value`
/// (bytes) stands in for an empty `value`, as Envoy reads it.
fn header_value(bytes: &[u8]) -> Result<(String, Vec<u8>), DecodeError> {
    let (mut key, mut value, mut raw) = (String::new(), Vec::new(), Vec::new());
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Len(k)) => key = utf8(k)?,
            (2, Value::Len(v)) => value = utf8(v)?.into_bytes(),
            (3, Value::Len(r)) => raw = r.to_vec(),
            _ => {}
        }
    }
    Ok((key, if value.is_empty() { raw } else { value }))
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

fn u32_of(n: u64) -> Result<u32, DecodeError> {
    u32::try_from(n).map_err(|_| DecodeError::OutOfRange)
}

// Decoding.

/// A field's value, by wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8]),
    Fixed32,
    Group,
}

/// The fields of one message, in order; stops at the first error.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u32, Value<'a>), DecodeError> {
        let (field, wire) = tag(&mut self.rest)?;
        if wire == END_GROUP {
            return Err(DecodeError::BadTag);
        }
        let value = value(&mut self.rest, field, wire, 0)?;
        Ok((field, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

fn varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut n = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(DecodeError::Truncated);
        };
        *input = rest;
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(DecodeError::BadVarint)
}

fn tag(input: &mut &[u8]) -> Result<(u32, u8), DecodeError> {
    let key = varint(input)?;
    let field = u32::try_from(key >> 3).map_err(|_| DecodeError::BadTag)?;
    let wire = (key & 7) as u8;
    if field == 0 || wire > FIXED32 {
        return Err(DecodeError::BadTag);
    }
    Ok((field, wire))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (taken, rest) = input.split_at(n);
    *input = rest;
    Ok(taken)
}

/// Reads the value of field `field` of wire type `wire`; a group is read up to its end.
fn value<'a>(
    input: &mut &'a [u8],
    field: u32,
    wire: u8,
    depth: u32,
) -> Result<Value<'a>, DecodeError> {
    Ok(match wire {
        VARINT => Value::Varint(varint(input)?),
        FIXED64 => {
            take(input, 8)?;
            Value::Fixed64
        }
        LEN => {
            let len = varint(input)?;
            let len = usize::try_from(len).map_err(|_| DecodeError::LengthTooLong)?;
            if len > input.len() {
                return Err(DecodeError::LengthTooLong);
            }
            Value::Len(take(input, len)?)
        }
        FIXED32 => {
            take(input, 4)?;
            Value::Fixed32
        }
        START_GROUP => {
            if depth >= MAX_GROUP_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            loop {
                let (inner, inner_wire) = tag(input)?;
                if inner_wire == END_GROUP {
                    if inner != field {
                        return Err(DecodeError::BadTag);
                    }
                    break;
                }
                value(input, inner, inner_wire, depth + 1)?;
            }
            Value::Group
        }
        _ => return Err(DecodeError::BadTag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over_limit_reply() -> RateLimitResponse {
        RateLimitResponse {
            overall_code: Code::OverLimit,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: 20,
                    unit: 2,
                    name: "per_user".into(),
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration::new(41, 500_000_000)),
            }],
            response_headers_to_add: vec![("x-ratelimit-limit".into(), b"20".to_vec())],
            request_headers_to_add: vec![("x-quota".into(), b"low".to_vec())],
            raw_body: b"slow down".to_vec(),
        }
    }

    #[test]
    fn a_request_encodes_as_the_protocol_defines_it() {
        let request = RateLimitRequest {
            domain: "ab".into(),
            descriptors: vec![vec![("k".into(), "v".into())]],
            hits_addend: 1,
        };
        // domain=1 "ab"; descriptors=2 { entries=1 { key=1 "k", value=2 "v" } }; hits_addend=3 1
        assert_eq!(
            request.encode(),
            [0x0a, 2, b'a', b'b', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1]
        );
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let request = RateLimitRequest {
            domain: "meshward".into(),
            descriptors: vec![vec![
                ("rule".into(), "per_user".into()),
                ("x-user".into(), "ä".repeat(100)),
                ("path".into(), String::new()),
            ]],
            hits_addend: 300,
        };
        assert_eq!(RateLimitRequest::decode(&request.encode()), Ok(request));
        let response = over_limit_reply();
        assert_eq!(RateLimitResponse::decode(&response.encode()), Ok(response));
        let empty = RateLimitResponse::default();
        assert!(empty.encode().is_empty());
        assert_eq!(RateLimitResponse::decode(&[]), Ok(empty));
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let known = over_limit_reply().encode();
        let mut bytes = Vec::new();
        put_tag(&mut bytes, 9, VARINT);
        put_varint(&mut bytes, u64::MAX);
        put_tag(&mut bytes, 10, FIXED64);
        bytes.extend_from_slice(&[1; 8]);
        put_tag(&mut bytes, 6, LEN); // dynamic_metadata, a Struct we skip
        put_varint(&mut bytes, 3);
        bytes.extend_from_slice(&[0x08, 0x01, 0x00]);
        put_tag(&mut bytes, 11, FIXED32);
        bytes.extend_from_slice(&[2; 4]);
        put_tag(&mut bytes, 12, START_GROUP);
        put_tag(&mut bytes, 1, VARINT);
        put_varint(&mut bytes, 5);
        put_tag(&mut bytes, 2, START_GROUP);
        put_tag(&mut bytes, 2, END_GROUP);
        put_tag(&mut bytes, 12, END_GROUP);
        bytes.extend_from_slice(&known);
        // A known field number with an unexpected wire type is skipped too.
        put_tag(&mut bytes, 1, FIXED32);
        bytes.extend_from_slice(&[9; 4]);
        assert_eq!(RateLimitResponse::decode(&bytes), Ok(over_limit_reply()));
    }

    #[test]
    fn truncated_input_is_refused_at_every_cut() {
        let bytes = over_limit_reply().encode();
        for cut in 1..bytes.len() {
            let head = &bytes[..cut];
            // A cut between two top-level fields leaves a shorter valid message.
            if let Ok(partial) = RateLimitResponse::decode(head) {
                assert_ne!(partial, over_limit_reply(), "cut at {cut}");
            }
        }
        assert_eq!(
            RateLimitResponse::decode(&[0x08]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            RateLimitResponse::decode(&[0x12, 0x05, 0x08]),
            Err(DecodeError::LengthTooLong)
        );
        assert_eq!(
            RateLimitResponse::decode(&[0x29, 1, 2]),
            Err(DecodeError::Truncated)
        );
        let mut unclosed = Vec::new();
        put_tag(&mut unclosed, 7, START_GROUP);
        assert_eq!(
            RateLimitResponse::decode(&unclosed),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn huge_lengths_and_malformed_tags_are_refused() {
        let mut huge = Vec::new();
        put_tag(&mut huge, 3, LEN);
        put_varint(&mut huge, u64::MAX);
        assert_eq!(
            RateLimitResponse::decode(&huge),
            Err(DecodeError::LengthTooLong)
        );
        assert_eq!(
            RateLimitResponse::decode(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(DecodeError::BadVarint)
        );
        assert_eq!(RateLimitResponse::decode(&[0x07]), Err(DecodeError::BadTag));
        assert_eq!(
            RateLimitResponse::decode(&[0x00, 0x00]),
            Err(DecodeError::BadTag)
        );
        assert_eq!(RateLimitResponse::decode(&[0x0c]), Err(DecodeError::BadTag));
        let mut mismatched = Vec::new();
        put_tag(&mut mismatched, 7, START_GROUP);
        put_tag(&mut mismatched, 8, END_GROUP);
        assert_eq!(
            RateLimitResponse::decode(&mismatched),
            Err(DecodeError::BadTag)
        );
        let mut deep = Vec::new();
        for _ in 0..100 {
            put_tag(&mut deep, 7, START_GROUP);
        }
        assert_eq!(RateLimitResponse::decode(&deep), Err(DecodeError::TooDeep));
        // A status whose nested header is not UTF-8.
        let mut bad = Vec::new();
        put_bytes(&mut bad, 3, &[0x0a, 1, 0xff]);
        assert_eq!(RateLimitResponse::decode(&bad), Err(DecodeError::NotUtf8));
        // limit_remaining past u32.
        let mut big = Vec::new();
        put_bytes(&mut big, 2, &[0x18, 0x80, 0x80, 0x80, 0x80, 0x10]);
        assert_eq!(
            RateLimitResponse::decode(&big),
            Err(DecodeError::OutOfRange)
        );
    }

    #[test]
    fn durations_read_seconds_and_nanos_and_a_negative_one_as_zero() {
        let status = |d: &[u8]| {
            let mut s = Vec::new();
            put_bytes(&mut s, 4, d);
            descriptor_status(&s).unwrap().duration_until_reset
        };
        assert_eq!(status(&[0x08, 3]), Some(Duration::from_secs(3)));
        assert_eq!(status(&[0x10, 5]), Some(Duration::from_nanos(5)));
        let mut negative = vec![0x08];
        put_varint(&mut negative, (-2i64) as u64);
        assert_eq!(status(&negative), Some(Duration::ZERO));
        let mut s = Vec::new();
        let mut d = vec![0x10];
        put_varint(&mut d, 2_000_000_000);
        put_bytes(&mut s, 4, &d);
        assert_eq!(descriptor_status(&s), Err(DecodeError::OutOfRange));
    }

    #[test]
    fn a_raw_value_header_stands_in_for_an_empty_value() {
        let mut h = Vec::new();
        put_string(&mut h, 1, b"x-raw");
        put_string(&mut h, 3, &[0xc3, 0x28]);
        assert_eq!(header_value(&h), Ok(("x-raw".into(), vec![0xc3, 0x28])));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seed = over_limit_reply().encode();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if next() % 3 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            let _ = RateLimitResponse::decode(&bytes);
            let _ = RateLimitRequest::decode(&bytes);
        }
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = RateLimitResponse::decode(&bytes);
        }
    }
}
