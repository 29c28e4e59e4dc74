//! The header maps and buffers a filter reads and writes through the ABI, as Envoy's
//! `getMap`, `getConstMap` and `getBuffer` give them: the stream's own while Envoy points
//! at them, a callout's answer during its callback, the configuration during start-up.

use crate::callouts::CalloutView;
use crate::headers::HeaderMap;
use crate::status::Status;
use crate::stream_data::StreamData;
use crate::vm_state::{ConfigWindow, VmState, ROOT_CONTEXT_ID};

/// A header map or buffer a filter names by its ABI number.
fn map_of(stream: &StreamData, map_type: i32) -> Option<&HeaderMap> {
    let response = stream.response.as_ref();
    if stream.access_log {
        return match map_type {
            0 => Some(&stream.request.headers),
            2 => response.map(|r| &r.headers),
            3 => response.map(|r| &r.trailers),
            _ => None,
        };
    }
    let a = &stream.attached;
    match map_type {
        0 if a.request_headers => Some(&stream.request.headers),
        1 if a.request_trailers => Some(&stream.request.trailers),
        2 if a.response_headers => response.map(|r| &r.headers),
        3 if a.response_trailers => response.map(|r| &r.trailers),
        _ => None,
    }
}

impl VmState {
    /// A header map the filter reads, following Envoy's `getConstMap`: unavailable maps are
    /// `BadArgument`, except in `proxy_on_log` where they are `NotFound`.
    pub(crate) fn read_map(&self, map_type: i32) -> Result<&HeaderMap, Status> {
        if !(0..=7).contains(&map_type) {
            return Err(Status::BadArgument);
        }
        let found = match map_type {
            0..=3 => self.stream().and_then(|s| map_of(s, map_type)),
            4 | 5 => match &self.callout_view {
                Some(CalloutView::GrpcMetadata(initial, map)) if *initial == (map_type == 4) => {
                    Some(map)
                }
                _ => None,
            },
            6 | 7 => match &self.callout_view {
                Some(CalloutView::Http(r)) if map_type == 6 => Some(&r.headers),
                // Envoy's response message has no trailer map unless trailers came.
                Some(CalloutView::Http(r)) if !r.trailers.is_empty() => Some(&r.trailers),
                _ => None,
            },
            _ => None,
        };
        match found {
            Some(map) => Ok(map),
            None if self.stream().is_some_and(|s| s.access_log) => Err(Status::NotFound),
            None => Err(Status::BadArgument),
        }
    }

    /// A header map the filter changes, following Envoy's `getMap`: only the stream's own
    /// maps while Envoy points at them, never in `proxy_on_log`.
    pub(crate) fn write_map(&mut self, map_type: i32) -> Result<&mut HeaderMap, Status> {
        let stream = self.stream_mut().ok_or(Status::BadArgument)?;
        if stream.access_log {
            return Err(Status::BadArgument);
        }
        // Envoy's `getMap`: trailers can be added from the last body chunk.
        if stream.end_of_stream {
            if map_type == 1 && stream.attached.request_body && stream.request.trailers.is_empty() {
                stream.attached.request_trailers = true;
                stream.added_trailers = true;
            }
            if map_type == 3
                && stream.attached.response_body
                && stream
                    .response
                    .as_ref()
                    .is_some_and(|r| r.trailers.is_empty())
            {
                stream.attached.response_trailers = true;
                stream.added_trailers = true;
            }
        }
        let a = stream.attached;
        match map_type {
            0 if a.request_headers => Ok(&mut stream.request.headers),
            1 if a.request_trailers => Ok(&mut stream.request.trailers),
            2 if a.response_headers => stream
                .response
                .as_mut()
                .map(|r| &mut r.headers)
                .ok_or(Status::BadArgument),
            3 if a.response_trailers => stream
                .response
                .as_mut()
                .map(|r| &mut r.trailers)
                .ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }

    /// A buffer the filter reads (`proxy_get_buffer_bytes`), as Envoy's `getBuffer`.
    pub(crate) fn read_buffer(&self, buffer_type: i32) -> Result<Vec<u8>, Status> {
        let body = |request: bool| {
            let stream = self.stream().filter(|s| !s.access_log);
            let bytes = match stream {
                Some(s) if request && s.attached.request_body => Some(s.body_view(true)),
                Some(s) if !request && s.attached.response_body => Some(s.body_view(false)),
                _ => None,
            };
            Ok(bytes.unwrap_or_default())
        };
        match buffer_type {
            0 => body(true),
            1 => body(false),
            2 | 3 | 8 => Ok(Vec::new()),
            4 => match &self.callout_view {
                Some(CalloutView::Http(r)) => Ok(r.body.clone()),
                _ => Err(Status::NotFound),
            },
            5 => match &self.callout_view {
                Some(CalloutView::Grpc(message)) => Ok(message.clone()),
                _ => Ok(Vec::new()),
            },
            6 if self.config_window == ConfigWindow::VmStart && self.current == ROOT_CONTEXT_ID => {
                Ok(self.shared.vm_config.clone())
            }
            7 if self.config_window == ConfigWindow::Configure
                && self.current == ROOT_CONTEXT_ID =>
            {
                Ok(self.shared.plugin_config.clone())
            }
            6 | 7 => Err(Status::NotFound),
            _ => Err(Status::BadArgument),
        }
    }

    /// `proxy_set_buffer_bytes` on a body, with Envoy's rules: at 0 with length 0 it
    /// prepends, at 0 covering the whole body it replaces, at 0 over part of the body it
    /// drains that part and prepends, at or past the end it appends; anywhere else is
    /// `BadArgument`.
    pub(crate) fn write_buffer(
        &mut self,
        buffer_type: i32,
        start: usize,
        length: usize,
        data: &[u8],
    ) -> Status {
        if !(0..=8).contains(&buffer_type) {
            return Status::BadArgument;
        }
        let Some(stream) = self.stream_mut().filter(|s| !s.access_log) else {
            return Status::BadArgument;
        };
        let attached = stream.attached;
        let (whole, passed) = match buffer_type {
            0 if attached.request_body => (&mut stream.request.body, stream.request_passed),
            1 if attached.response_body => match stream.response.as_mut() {
                Some(r) => (&mut r.body, stream.response_passed),
                None => return Status::BadArgument,
            },
            _ => return Status::BadArgument,
        };
        // The filter edits what is still in its buffer, after what it let through.
        let mut body = whole.split_off(passed.min(whole.len()));
        let status = if start == 0 && length == 0 {
            body.splice(0..0, data.iter().copied());
            Status::Ok
        } else if start == 0 && length >= body.len() {
            body = data.to_vec();
            Status::Ok
        } else if start == 0 {
            body.splice(0..length, data.iter().copied());
            Status::Ok
        } else if start >= body.len() {
            body.extend_from_slice(data);
            Status::Ok
        } else {
            Status::BadArgument
        };
        whole.extend_from_slice(&body);
        status
    }
}
