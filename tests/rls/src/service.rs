//! The `ShouldRateLimit` handler. The request's domain is limitador's namespace; its
//! descriptors become the CEL list `descriptors` (each a map from entry key to value), which
//! limits match with `conditions` and count by with `variables`, as limitador-server does.
//! `hits_addend` is the delta (0 means 1). The answer is OVER_LIMIT when any limit that
//! applies would go over, with a status per descriptor carrying the most restrictive
//! counter's limit, remaining hits and `duration_until_reset`, and limitador's
//! `X-RateLimit-*` headers as `response_headers_to_add`; OK otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use limitador::counter::Counter;
use limitador::limit::{Context, Namespace};
use limitador::AsyncRateLimiter;
use tonic::{Request, Response, Status};

use crate::grpc::rate_limit_service_server::RateLimitService;
use crate::proto::{
    Code, DescriptorStatus, Duration, HeaderValue, RateLimit, RateLimitRequest, RateLimitResponse,
    Unit,
};

/// What the service has answered so far.
#[derive(Debug, Default)]
pub struct Tally {
    pub calls: AtomicU64,
    pub ok: AtomicU64,
    pub over_limit: AtomicU64,
    pub errors: AtomicU64,
}

impl Tally {
    /// `calls=N ok=N over_limit=N errors=N`, the line the binary prints.
    pub fn line(&self) -> String {
        format!(
            "calls={} ok={} over_limit={} errors={}",
            self.calls.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.over_limit.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// The service: a limitador rate limiter and a tally of answers.
pub struct Rls {
    limiter: AsyncRateLimiter,
    /// limitador's Redis storage reads the counters, decides, then increments: two checks
    /// racing on one key could both pass on the last hit. One check at a time keeps the
    /// count exact for this single-instance service.
    one_at_a_time: tokio::sync::Mutex<()>,
    tally: Arc<Tally>,
}

impl Rls {
    pub fn new(limiter: AsyncRateLimiter) -> Rls {
        Rls {
            limiter,
            one_at_a_time: tokio::sync::Mutex::new(()),
            tally: Arc::new(Tally::default()),
        }
    }

    /// The tally, shared with whoever reports it.
    pub fn tally(&self) -> Arc<Tally> {
        Arc::clone(&self.tally)
    }

    async fn check(&self, request: RateLimitRequest) -> Result<RateLimitResponse, Status> {
        if request.domain.is_empty() {
            return Err(Status::invalid_argument("domain: must not be empty"));
        }
        if request.descriptors.is_empty() {
            return Err(Status::invalid_argument("descriptors: must not be empty"));
        }
        let namespace = Namespace::from(request.domain.as_str());
        let descriptors: Vec<HashMap<String, String>> = request
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_owned(), descriptors);
        let delta = u64::from(request.hits_addend.max(1));

        let mut result = {
            let _turn = self.one_at_a_time.lock().await;
            self.limiter
                .check_rate_limited_and_update(&namespace, &ctx, delta)
                .await
                .map_err(|e| Status::unavailable(format!("limitador storage: {e}")))?
        };
        // Sorts the counters, most restrictive first.
        let headers = result.response_header();
        let code = if result.limited {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let status = descriptor_status(code, result.counters.first());
        let mut response_headers_to_add: Vec<HeaderValue> = headers
            .into_iter()
            .map(|(key, value)| HeaderValue { key, value })
            .collect();
        response_headers_to_add.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(RateLimitResponse {
            overall_code: code as i32,
            statuses: vec![status; request.descriptors.len()],
            response_headers_to_add,
            request_headers_to_add: Vec::new(),
        })
    }
}

fn descriptor_status(code: Code, counter: Option<&Counter>) -> DescriptorStatus {
    let Some(counter) = counter else {
        return DescriptorStatus {
            code: code as i32,
            ..DescriptorStatus::default()
        };
    };
    let unit = match counter.window().as_secs() {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86400 => Unit::Day,
        _ => Unit::Unknown,
    };
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
            unit: unit as i32,
            name: counter.limit().name().unwrap_or_default().to_owned(),
        }),
        limit_remaining: counter
            .remaining()
            .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        duration_until_reset: counter.expires_in().map(|d| Duration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }),
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.tally.calls.fetch_add(1, Ordering::Relaxed);
        match self.check(request.into_inner()).await {
            Ok(response) => {
                let counter = if response.overall_code == Code::OverLimit as i32 {
                    &self.tally.over_limit
                } else {
                    &self.tally.ok
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(Response::new(response))
            }
            Err(status) => {
                self.tally.errors.fetch_add(1, Ordering::Relaxed);
                Err(status)
            }
        }
    }
}
