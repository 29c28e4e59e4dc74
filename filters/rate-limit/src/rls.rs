//! The Envoy Rate Limit Service protocol (`envoy.service.ratelimit.v3`): the filter's view
//! of a `RateLimitRequest` and a `RateLimitResponse`, and their protobuf wire form through
//! `prost` (message structs declared here with its derive: no protoc, no generated files).
//! Decoding takes untrusted bytes and never panics: prost skips unknown fields (groups to a
//! bounded depth) and refuses truncated input, lengths past the end, a known field of the
//! wrong wire type and strings that are not UTF-8. Why `prost` and not a codec of our own:
//! BENCHMARKS.md, "The protobuf codec".

use prost::Message;
use std::time::Duration;

/// The gRPC service the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// Its one method.
pub const METHOD: &str = "ShouldRateLimit";

/// Why bytes are not a `RateLimitResponse` the filter can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<prost::DecodeError> for DecodeError {
    fn from(error: prost::DecodeError) -> Self {
        DecodeError(error.to_string())
    }
}

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

// The wire form: the protocol's messages as prost declares them, and the conversions.

impl RateLimitRequest {
    /// The message in the protobuf wire format.
    pub fn encode(&self) -> Vec<u8> {
        wire::RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: self
                .descriptors
                .iter()
                .map(|entries| wire::RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(key, value)| wire::Entry {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
            hits_addend: self.hits_addend,
        }
        .encode_to_vec()
    }

    /// Reads a request (what a service would do; the tests check what the filter sent).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request = wire::RateLimitRequest::decode(bytes)?;
        Ok(RateLimitRequest {
            domain: request.domain,
            descriptors: request
                .descriptors
                .into_iter()
                .map(|d| d.entries.into_iter().map(|e| (e.key, e.value)).collect())
                .collect(),
            hits_addend: request.hits_addend,
        })
    }
}

impl RateLimitResponse {
    /// Reads a service's answer.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let response = wire::RateLimitResponse::decode(bytes)?;
        Ok(RateLimitResponse {
            overall_code: Code::from_wire(response.overall_code),
            statuses: response
                .statuses
                .into_iter()
                .map(descriptor_status)
                .collect::<Result<_, _>>()?,
            response_headers_to_add: response
                .response_headers_to_add
                .into_iter()
                .map(header_value)
                .collect(),
            request_headers_to_add: response
                .request_headers_to_add
                .into_iter()
                .map(header_value)
                .collect(),
            raw_body: response.raw_body,
        })
    }

    /// The message in the protobuf wire format (what a service sends; for tests).
    pub fn encode(&self) -> Vec<u8> {
        let header = |(key, value): &(String, Vec<u8>)| match String::from_utf8(value.clone()) {
            Ok(value) => wire::HeaderValue {
                key: key.clone(),
                value,
                raw_value: Vec::new(),
            },
            Err(raw) => wire::HeaderValue {
                key: key.clone(),
                value: String::new(),
                raw_value: raw.into_bytes(),
            },
        };
        wire::RateLimitResponse {
            overall_code: self.overall_code.to_wire(),
            statuses: self
                .statuses
                .iter()
                .map(|status| wire::DescriptorStatus {
                    code: status.code.to_wire(),
                    current_limit: status.current_limit.as_ref().map(|limit| wire::RateLimit {
                        requests_per_unit: limit.requests_per_unit,
                        unit: limit.unit,
                        name: limit.name.clone(),
                    }),
                    limit_remaining: status.limit_remaining,
                    duration_until_reset: status.duration_until_reset.map(|reset| {
                        prost_types::Duration {
                            seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
                            nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
                        }
                    }),
                })
                .collect(),
            response_headers_to_add: self.response_headers_to_add.iter().map(header).collect(),
            request_headers_to_add: self.request_headers_to_add.iter().map(header).collect(),
            raw_body: self.raw_body.clone(),
        }
        .encode_to_vec()
    }
}

fn descriptor_status(status: wire::DescriptorStatus) -> Result<DescriptorStatus, DecodeError> {
    Ok(DescriptorStatus {
        code: Code::from_wire(status.code),
        current_limit: status.current_limit.map(|limit| CurrentLimit {
            requests_per_unit: limit.requests_per_unit,
            unit: limit.unit,
            name: limit.name,
        }),
        limit_remaining: status.limit_remaining,
        duration_until_reset: status.duration_until_reset.map(duration).transpose()?,
    })
}

/// A `google.protobuf.Duration`; a negative one reads as zero: the window has already reset.
fn duration(d: prost_types::Duration) -> Result<Duration, DecodeError> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos) {
        return Err(DecodeError(format!(
            "duration_until_reset: nanos {} is out of range",
            d.nanos
        )));
    }
    Ok(match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(seconds), Ok(nanos)) => Duration::new(seconds, nanos),
        _ => Duration::ZERO,
    })
}

/// `raw_value` (bytes) stands in for an empty `value`, as Envoy reads it.
fn header_value(header: wire::HeaderValue) -> (String, Vec<u8>) {
    let value = if header.value.is_empty() {
        header.raw_value
    } else {
        header.value.into_bytes()
    };
    (header.key, value)
}

/// The messages as the protocol defines them, fields the filter ignores left out (prost
/// skips them when decoding). Enums are read as their numbers (`Code::from_wire`), so a
/// code this version does not know is kept, not refused.
mod wire {
    /// `envoy.service.ratelimit.v3.RateLimitRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitRequest {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    /// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitDescriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
    }

    /// `RateLimitDescriptor.Entry`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `envoy.service.ratelimit.v3.RateLimitResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitResponse {
        #[prost(uint64, tag = "1")]
        pub overall_code: u64,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
        #[prost(message, repeated, tag = "3")]
        pub response_headers_to_add: Vec<HeaderValue>,
        #[prost(message, repeated, tag = "4")]
        pub request_headers_to_add: Vec<HeaderValue>,
        #[prost(bytes = "vec", tag = "5")]
        pub raw_body: Vec<u8>,
    }

    /// `RateLimitResponse.DescriptorStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        #[prost(uint64, tag = "1")]
        pub code: u64,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<prost_types::Duration>,
    }

    /// `RateLimitResponse.RateLimit`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(uint64, tag = "2")]
        pub unit: u64,
        #[prost(string, tag = "3")]
        pub name: String,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::encoding::{encode_key, encode_varint, WireType};

    fn key(out: &mut Vec<u8>, field: u32, wire: WireType) {
        encode_key(field, wire, out);
    }

    fn varint(out: &mut Vec<u8>, n: u64) {
        encode_varint(n, out);
    }

    fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        key(out, field, WireType::LengthDelimited);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// A response with one status whose field 4 (the reset duration) is `duration`.
    fn status_with_reset(duration: &[u8]) -> Vec<u8> {
        let mut status = Vec::new();
        bytes_field(&mut status, 4, duration);
        let mut response = Vec::new();
        bytes_field(&mut response, 2, &status);
        response
    }

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
        key(&mut bytes, 9, WireType::Varint);
        varint(&mut bytes, u64::MAX);
        key(&mut bytes, 10, WireType::SixtyFourBit);
        bytes.extend_from_slice(&[1; 8]);
        key(&mut bytes, 6, WireType::LengthDelimited); // dynamic_metadata, a Struct we skip
        varint(&mut bytes, 3);
        bytes.extend_from_slice(&[0x08, 0x01, 0x00]);
        key(&mut bytes, 11, WireType::ThirtyTwoBit);
        bytes.extend_from_slice(&[2; 4]);
        key(&mut bytes, 12, WireType::StartGroup);
        key(&mut bytes, 1, WireType::Varint);
        varint(&mut bytes, 5);
        key(&mut bytes, 2, WireType::StartGroup);
        key(&mut bytes, 2, WireType::EndGroup);
        key(&mut bytes, 12, WireType::EndGroup);
        bytes.extend_from_slice(&known);
        assert_eq!(RateLimitResponse::decode(&bytes), Ok(over_limit_reply()));
    }

    #[test]
    fn a_known_field_of_the_wrong_wire_type_is_refused() {
        // overall_code (a varint) sent as four bytes: not a reply the filter can trust.
        let mut bytes = over_limit_reply().encode();
        key(&mut bytes, 1, WireType::ThirtyTwoBit);
        bytes.extend_from_slice(&[9; 4]);
        assert!(RateLimitResponse::decode(&bytes).is_err());
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
        for truncated in [&[0x08][..], &[0x12, 0x05, 0x08], &[0x29, 1, 2]] {
            assert!(
                RateLimitResponse::decode(truncated).is_err(),
                "{truncated:?}"
            );
        }
        let mut unclosed = Vec::new();
        key(&mut unclosed, 7, WireType::StartGroup);
        assert!(RateLimitResponse::decode(&unclosed).is_err());
    }

    #[test]
    fn huge_lengths_malformed_tags_and_deep_groups_are_refused() {
        let mut huge = Vec::new();
        key(&mut huge, 3, WireType::LengthDelimited);
        varint(&mut huge, u64::MAX);
        assert!(RateLimitResponse::decode(&huge).is_err());
        let eleven_byte_varint = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(RateLimitResponse::decode(&eleven_byte_varint).is_err());
        // Wire type 7, field 0, an end of group never opened.
        for bad in [&[0x07][..], &[0x00, 0x00], &[0x0c]] {
            assert!(RateLimitResponse::decode(bad).is_err(), "{bad:?}");
        }
        let mut mismatched = Vec::new();
        key(&mut mismatched, 7, WireType::StartGroup);
        key(&mut mismatched, 8, WireType::EndGroup);
        assert!(RateLimitResponse::decode(&mismatched).is_err());
        let mut deep = Vec::new();
        for _ in 0..200 {
            key(&mut deep, 7, WireType::StartGroup);
        }
        for _ in 0..200 {
            key(&mut deep, 7, WireType::EndGroup);
        }
        assert!(RateLimitResponse::decode(&deep).is_err(), "bounded depth");
        // A header whose key is not UTF-8.
        let mut bad = Vec::new();
        bytes_field(&mut bad, 3, &[0x0a, 1, 0xff]);
        assert!(RateLimitResponse::decode(&bad).is_err());
    }

    #[test]
    fn a_uint32_past_32_bits_is_truncated_as_envoy_reads_it() {
        // limit_remaining = 2^32 + 7: protobuf's C++ parser (Envoy's) keeps the low 32 bits.
        let mut status = vec![0x18];
        varint(&mut status, (1 << 32) + 7);
        let mut response = Vec::new();
        bytes_field(&mut response, 2, &status);
        let decoded = RateLimitResponse::decode(&response).unwrap();
        assert_eq!(decoded.statuses[0].limit_remaining, 7);
    }

    #[test]
    fn durations_read_seconds_and_nanos_and_a_negative_one_as_zero() {
        let reset = |d: &[u8]| {
            RateLimitResponse::decode(&status_with_reset(d))
                .map(|r| r.statuses[0].duration_until_reset)
        };
        assert_eq!(reset(&[0x08, 3]), Ok(Some(Duration::from_secs(3))));
        assert_eq!(reset(&[0x10, 5]), Ok(Some(Duration::from_nanos(5))));
        let mut negative = vec![0x08];
        varint(&mut negative, (-2i64) as u64);
        assert_eq!(reset(&negative), Ok(Some(Duration::ZERO)));
        let mut out_of_range = vec![0x10];
        varint(&mut out_of_range, 2_000_000_000);
        assert!(reset(&out_of_range).is_err());
    }

    #[test]
    fn a_raw_value_header_stands_in_for_an_empty_value() {
        let mut header = Vec::new();
        bytes_field(&mut header, 1, b"x-raw");
        bytes_field(&mut header, 3, &[0xc3, 0x28]);
        let mut response = Vec::new();
        bytes_field(&mut response, 3, &header);
        assert_eq!(
            RateLimitResponse::decode(&response)
                .unwrap()
                .response_headers_to_add,
            [("x-raw".to_string(), vec![0xc3, 0x28])]
        );
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
