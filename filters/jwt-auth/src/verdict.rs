//! The verdict for one request: which rule applies, which tokens it needs, whether they
//! verify, whether their claims suffice, and what the request carries upstream. Pure: the
//! adapter hands in headers, the time, the caches and a way to reach keys.
//!
//! Every token the rule's providers can find is checked, from every source of every
//! provider: a request carrying any token that does not verify is refused, even beside a
//! valid one, so a forged token never rides to the upstream on a valid one's back (as
//! Envoy's `jwt_authn` does for the same reason).

use crate::cache::{TokenCache, Verified};
use crate::claims::{self, ClaimError};
use crate::config::{Config, Keys};
use crate::deny::{Denial, Reason};
use crate::failed::FailedSignatures;
use crate::forward::{self, Edit};
use crate::policy::{self, ClaimCheck, Mode, Requirement};
pub use crate::remote::Lookup as KeyLookup;
use crate::sources::{self, Header, TokenSource};
use crate::token::{self, TokenError};
use crate::verify::{self, Bounds, Engine, HostVerifier, VerifyError};
use std::borrow::Cow;
use std::rc::Rc;

/// The request as the filter sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// All request headers, pseudo-headers included, duplicates kept.
    pub headers: &'a [Header<'a>],
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
}

fn first_str<'a>(headers: &[Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

impl<'a> Request<'a> {
    /// Reads the pseudo-headers from `headers` (missing ones read as empty).
    pub fn new(headers: &'a [Header<'a>]) -> Self {
        Request {
            headers,
            method: first_str(headers, ":method").unwrap_or(""),
            path: first_str(headers, ":path").unwrap_or("/"),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| *k == name)
    }
}

/// Access to remote key sets.
pub trait KeyStore {
    /// Keys of remote source `source` for a token naming `kid`.
    fn lookup(&mut self, source: usize, kid: Option<&str>) -> KeyLookup;
}

/// Counts of what the verdict did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tokens found in the verified-token cache.
    pub cache_hits: u64,
    /// Tokens not found there.
    pub cache_misses: u64,
    /// Signatures checked by the host.
    pub host_checks: u64,
    /// Signatures checked in Wasm.
    pub wasm_checks: u64,
    /// Tokens refused from the recently failed signatures, without verifying again.
    pub failed_hits: u64,
}

/// Everything a verdict reads or updates besides the request.
pub struct Env<'e> {
    /// The configuration.
    pub config: &'e Config,
    /// This worker's verified tokens.
    pub cache: &'e mut TokenCache,
    /// This worker's recently failed signatures.
    pub failed: &'e mut FailedSignatures,
    /// Remote keys.
    pub keys: &'e mut dyn KeyStore,
    /// The host's signature verifier.
    pub host: &'e mut dyn HostVerifier,
    /// Now, in seconds since the epoch; `None` when the proxy's clock cannot be read.
    pub now: Option<u64>,
    /// What was done.
    pub tally: &'e mut Tally,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through with these edits.
    Allow(Vec<Edit>),
    /// Refuse it.
    Deny(Denial),
    /// Fetch remote source `.0` (the lease is held), then decide again.
    Fetch(usize),
    /// A fetch of remote source `source` is in flight elsewhere: hold the request and
    /// decide again when it lands, or at `until_ms` at the latest.
    Wait {
        /// The source.
        source: usize,
        /// When to stop waiting (ms since the epoch).
        until_ms: u64,
    },
}

enum Auth {
    Verified(Rc<Verified>),
    Fetch(usize),
    Wait(usize, u64),
}

/// Decides what happens to `request`.
pub fn decide(env: &mut Env<'_>, request: &Request<'_>) -> Verdict {
    let config = env.config;
    let mut edits: Vec<Edit> = config
        .managed_headers
        .iter()
        .map(|h| Edit::Remove(h.clone()))
        .collect();
    if policy::is_cors_preflight(
        request.method,
        request.has("origin"),
        request.has("access-control-request-method"),
    ) {
        return Verdict::Allow(edits);
    }
    let requirement = policy::select(&config.rules, request.headers)
        .map_or(&config.default_requirement, |r| &r.requirement);
    let Requirement::Verify {
        providers,
        mode,
        allow_missing,
        claims: required,
    } = requirement
    else {
        return Verdict::Allow(edits);
    };

    // Every distinct token, with where each provider found it.
    let mut tokens: Vec<Seen> = Vec::new();
    for &index in providers {
        let Some(provider) = config.providers.get(index) else {
            continue;
        };
        let found = match sources::extract_all(&provider.from, request.headers, request.path) {
            Ok(found) => found,
            Err(err) => return Verdict::Deny(Denial::new(Reason::Malformed, err.to_string())),
        };
        for token in found {
            let at = (index, token.source);
            match tokens.iter_mut().find(|seen| seen.token == token.token) {
                Some(seen) => seen.found_by.push(at),
                None => tokens.push(Seen {
                    token: token.token,
                    found_by: vec![at],
                    verified_by: Vec::new(),
                }),
            }
        }
    }
    if tokens.is_empty() {
        if *allow_missing {
            return Verdict::Allow(edits);
        }
        return Verdict::Deny(Denial::new(Reason::Missing, "a bearer token is required"));
    }
    let found_for = |index: usize| {
        tokens
            .iter()
            .any(|seen| seen.found_by.iter().any(|(p, _)| *p == index))
    };
    if *mode == Mode::All && !*allow_missing && !providers.iter().all(|&p| found_for(p)) {
        return Verdict::Deny(Denial::new(
            Reason::Missing,
            "a token from every required issuer is required",
        ));
    }
    // Without a clock no expiry can be checked: refuse rather than take the time as 0.
    let Some(now) = env.now else {
        return Verdict::Deny(Denial::new(
            Reason::ClockUnavailable,
            "the proxy cannot check tokens now",
        ));
    };

    let mut verified: Vec<(usize, Rc<Verified>)> = Vec::new();
    let mut refusals: Vec<(usize, Denial)> = Vec::new();
    for seen in &mut tokens {
        let mut refusal: Option<Denial> = None;
        // Each provider that found it, once, in the order they found it.
        for (at, &(index, _)) in seen.found_by.iter().enumerate() {
            let earlier = seen.found_by.get(..at).unwrap_or_default();
            if earlier.iter().any(|&(p, _)| p == index) {
                continue;
            }
            match authenticate(env, index, &seen.token, now) {
                Ok(Auth::Verified(v)) => {
                    verified.push((index, v));
                    seen.verified_by.push(index);
                    // In `all` mode the token may count for several of its providers.
                    if *mode == Mode::Any {
                        break;
                    }
                }
                Ok(Auth::Fetch(source)) => return Verdict::Fetch(source),
                Ok(Auth::Wait(source, until_ms)) => return Verdict::Wait { source, until_ms },
                // With several providers, a wrong issuer mostly means "not this provider":
                // report any more telling reason another provider gave.
                Err(denial) => {
                    match &refusal {
                        Some(first) if first.reason != Reason::WrongIssuer => {}
                        _ => refusal = Some(denial.clone()),
                    }
                    refusals.push((index, denial));
                }
            }
        }
        if seen.verified_by.is_empty() {
            return Verdict::Deny(
                refusal
                    .unwrap_or_else(|| Denial::new(Reason::Missing, "a bearer token is required")),
            );
        }
    }
    if *mode == Mode::All {
        for &index in providers {
            if verified.iter().any(|(p, _)| *p == index) {
                continue;
            }
            return Verdict::Deny(
                refusals
                    .iter()
                    .find(|(p, _)| *p == index)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| {
                        Denial::new(
                            Reason::Missing,
                            "a token from every required issuer is required",
                        )
                    }),
            );
        }
    }

    // Built only when a claim is required: most rules need a valid token and no more.
    let views: Vec<(usize, &claims::Claims)> = if required.is_empty() {
        Vec::new()
    } else {
        verified.iter().map(|(i, v)| (*i, &v.claims)).collect()
    };
    if let Some(unmet) = policy::unmet(required, &views) {
        let mut denial = Denial::new(
            Reason::InsufficientClaims,
            format!(
                "the token lacks the required claim {}",
                unmet.path.join(".")
            ),
        );
        if let ClaimCheck::Scopes(scopes) = &unmet.check {
            denial.description = format!("the token lacks the scopes {}", scopes.join(" "));
            denial.scope = Some(scopes.join(" "));
        }
        return Verdict::Deny(denial);
    }

    for (index, v) in &verified {
        if let Some(provider) = config.providers.get(*index) {
            edits.extend(forward::claim_edits(&provider.forwarding, v));
        }
    }
    // Every token location is taken out unless the token there was verified by a
    // provider that forwards it.
    let mut strip: Vec<&TokenSource> = Vec::new();
    for seen in &tokens {
        let forwarded = seen.verified_by.iter().any(|&p| {
            config
                .providers
                .get(p)
                .is_some_and(|provider| provider.forwarding.keep_token)
        });
        if forwarded {
            continue;
        }
        for &(p, source) in &seen.found_by {
            if let Some(location) = config.providers.get(p).and_then(|pr| pr.from.get(source)) {
                strip.push(location);
            }
        }
    }
    edits.extend(forward::strip(&strip, request.headers, request.path));
    Verdict::Allow(edits)
}

/// One distinct token of the request.
struct Seen<'a> {
    token: Cow<'a, str>,
    /// (provider, index of its source) for each place a provider found it.
    found_by: Vec<(usize, usize)>,
    /// The providers that verified it.
    verified_by: Vec<usize>,
}

/// Verifies `raw` for provider `index` at `now`: from the cache when it can, in full
/// otherwise, cheapest checks first.
fn authenticate(env: &mut Env<'_>, index: usize, raw: &str, now: u64) -> Result<Auth, Denial> {
    let config = env.config;
    let Some(provider) = config.providers.get(index) else {
        return Err(Denial::new(Reason::Malformed, "no such provider"));
    };
    if let Some(hit) = env.cache.get(raw, index, now) {
        env.tally.cache_hits += 1;
        claims::check_times(&hit.times, now, &provider.time).map_err(claim_denial)?;
        return Ok(Auth::Verified(hit));
    }
    env.tally.cache_misses += 1;
    // The id covers the whole token: a match refuses it unverified.
    let id = crate::cache::token_id(raw);
    if env.failed.contains_id(id, index, now) {
        env.tally.failed_hits += 1;
        return Err(verify_denial(VerifyError::BadSignature));
    }
    let token = token::parse(raw, config.max_token_bytes).map_err(token_denial)?;
    claims::check_issuer(&token.claims, provider.issuer.as_deref()).map_err(claim_denial)?;
    if let Some(allowed) = &provider.algorithms {
        if !allowed.contains(&token.header.alg) {
            return Err(Denial::new(
                Reason::BadSignature,
                "the token's algorithm is not accepted",
            ));
        }
    }
    let times = claims::times(&token.claims).map_err(claim_denial)?;
    claims::check_times(&times, now, &provider.time).map_err(claim_denial)?;
    claims::check_audience(&token.claims, &provider.audiences).map_err(claim_denial)?;
    let keys = match &provider.keys {
        Keys::Inline(keys) => Rc::clone(keys),
        Keys::Remote(source) => match env.keys.lookup(*source, token.header.kid.as_deref()) {
            KeyLookup::Ready(keys) => keys,
            KeyLookup::Fetch => return Ok(Auth::Fetch(*source)),
            KeyLookup::Wait(until_ms) => return Ok(Auth::Wait(*source, until_ms)),
            KeyLookup::Unavailable => {
                return Err(Denial::new(
                    Reason::UnknownKid,
                    "the issuer's signing keys are not available",
                ))
            }
        },
    };
    let limits = Bounds {
        max_keys_without_kid: provider.max_keys_without_kid,
        max_wasm_rsa_bits: config.max_wasm_rsa_bits,
    };
    match verify::verify(&token, &keys, env.host, limits) {
        Ok(Engine::Host) => env.tally.host_checks += 1,
        Ok(Engine::Wasm) => env.tally.wasm_checks += 1,
        Err(err) => {
            if err == VerifyError::BadSignature {
                env.failed.insert_id(id, index, now);
            }
            return Err(verify_denial(err));
        }
    }
    let verified = Rc::new(Verified {
        claims: token.claims,
        times,
        payload_segment: token.payload_segment.to_string(),
    });
    env.cache.insert(raw, index, Rc::clone(&verified), now);
    Ok(Auth::Verified(verified))
}

fn token_denial(err: TokenError) -> Denial {
    let reason = match err {
        TokenError::TooLarge | TokenError::Malformed(_) => Reason::Malformed,
        TokenError::Unsigned | TokenError::UnsupportedAlgorithm | TokenError::MissingSignature => {
            Reason::BadSignature
        }
    };
    Denial::new(reason, err.to_string())
}

fn claim_denial(err: ClaimError) -> Denial {
    let reason = match err {
        ClaimError::Malformed(_) | ClaimError::MissingExpiry => Reason::Malformed,
        ClaimError::Expired | ClaimError::LifetimeTooLong => Reason::Expired,
        ClaimError::NotYetValid | ClaimError::IssuedInTheFuture => Reason::NotYetValid,
        ClaimError::WrongIssuer => Reason::WrongIssuer,
        ClaimError::WrongAudience => Reason::WrongAudience,
    };
    Denial::new(reason, err.to_string())
}

fn verify_denial(err: VerifyError) -> Denial {
    let reason = match err {
        VerifyError::UnknownKid | VerifyError::NoKeyForAlgorithm | VerifyError::MissingKid => {
            Reason::UnknownKid
        }
        VerifyError::AlgorithmNotAllowed
        | VerifyError::BadSignature
        | VerifyError::KeyTooLargeForWasm => Reason::BadSignature,
    };
    Denial::new(reason, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::fixtures::{self, NOW};
    use crate::token::Algorithm;
    use crate::verify::NoHost;
    use serde_json::{json, Value};

    /// No remote sources: every provider in these tests has inline keys unless a test
    /// says otherwise.
    struct Scripted(KeyLookup);

    impl KeyStore for Scripted {
        fn lookup(&mut self, _source: usize, _kid: Option<&str>) -> KeyLookup {
            self.0.clone()
        }
    }

    fn provider() -> Value {
        json!({
            "name": "idp",
            "issuer": fixtures::ISSUER,
            "audiences": [fixtures::AUDIENCE],
            "jwks": fixtures::jwks(),
            "claims_to_headers": [{ "claim": "sub", "header": "x-jwt-sub" }, { "claim": "groups", "header": "x-jwt-groups" }],
            "payload_header": "x-jwt-payload",
        })
    }

    fn config_with(extra: Value) -> Config {
        let mut doc = json!({ "providers": [provider()] });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                doc.insert(k.clone(), v.clone());
            }
        }
        config::parse(doc.to_string().as_bytes()).unwrap()
    }

    struct Harness {
        config: Config,
        cache: TokenCache,
        failed: FailedSignatures,
        keys: Scripted,
        tally: Tally,
        now: Option<u64>,
    }

    impl Harness {
        fn new(config: Config) -> Self {
            Harness {
                cache: TokenCache::new(config.cache_entries),
                failed: FailedSignatures::default(),
                config,
                keys: Scripted(KeyLookup::Unavailable),
                tally: Tally::default(),
                now: Some(NOW),
            }
        }

        fn decide(&mut self, headers: &[(&str, &str)]) -> Verdict {
            let mut all: Vec<meshward_shared::pairs::Pair> = vec![
                (":method".into(), b"GET".to_vec()),
                (":authority".into(), b"api.test".to_vec()),
                (":path".into(), b"/".to_vec()),
            ];
            for (k, v) in headers {
                match all
                    .iter_mut()
                    .find(|(name, _)| name == k && name.starts_with(':'))
                {
                    Some(slot) => slot.1 = v.as_bytes().to_vec(),
                    None => all.push((k.to_string(), v.as_bytes().to_vec())),
                }
            }
            let mut env = Env {
                config: &self.config,
                cache: &mut self.cache,
                failed: &mut self.failed,
                keys: &mut self.keys,
                host: &mut NoHost,
                now: self.now,
                tally: &mut self.tally,
            };
            decide(&mut env, &Request::new(&sources::lend(&all)))
        }

        fn bearer(&mut self, token: &str) -> Verdict {
            self.decide(&[("authorization", &format!("Bearer {token}"))])
        }
    }

    fn reason(verdict: &Verdict) -> Option<&'static str> {
        match verdict {
            Verdict::Deny(denial) => Some(denial.reason.name()),
            _ => None,
        }
    }

    #[test]
    fn the_corpus_gets_the_expected_verdicts() {
        let mut h = Harness::new(config_with(json!({})));
        for case in fixtures::corpus(NOW) {
            let verdict = h.bearer(&case.token);
            assert_eq!(reason(&verdict), case.reason, "{}: {verdict:?}", case.name);
        }
    }

    #[test]
    fn a_valid_token_passes_with_its_claims_and_without_the_token() {
        let mut h = Harness::new(config_with(json!({})));
        let token = fixtures::token(Algorithm::ES256, NOW);
        let payload = token.split('.').nth(1).unwrap().to_string();
        let Verdict::Allow(edits) = h.bearer(&token) else {
            panic!("should pass");
        };
        assert_eq!(
            edits,
            vec![
                Edit::Remove("x-jwt-sub".into()),
                Edit::Remove("x-jwt-groups".into()),
                Edit::Remove("x-jwt-payload".into()),
                Edit::Set("x-jwt-sub".into(), "user-1".into()),
                Edit::Set("x-jwt-groups".into(), "staff,dev".into()),
                Edit::Set("x-jwt-payload".into(), payload),
                Edit::Remove("authorization".into()),
            ]
        );
    }

    #[test]
    fn a_missing_token_is_refused_with_a_bare_challenge() {
        let mut h = Harness::new(config_with(json!({})));
        let Verdict::Deny(denial) = h.decide(&[]) else {
            panic!("should be refused");
        };
        assert_eq!(denial.status(), 401);
        assert_eq!(denial.challenge("meshward"), "Bearer realm=\"meshward\"");
    }

    #[test]
    fn duplicate_authorization_headers_are_refused_as_malformed() {
        let mut h = Harness::new(config_with(json!({})));
        let token = fixtures::token(Algorithm::RS256, NOW);
        let bearer = format!("Bearer {token}");
        let verdict = h.decide(&[("authorization", &bearer), ("authorization", &bearer)]);
        assert_eq!(reason(&verdict), Some("malformed"));
    }

    #[test]
    fn spoofed_claim_headers_are_removed_even_where_no_token_is_needed() {
        let mut h = Harness::new(config_with(
            json!({ "rules": [{ "match": { "path": {"prefix": "/public"} }, "token": "ignored" }] }),
        ));
        let verdict = h.decide(&[(":path", "/public/x"), ("x-jwt-sub", "admin")]);
        let Verdict::Allow(edits) = verdict else {
            panic!("should pass");
        };
        assert!(edits.contains(&Edit::Remove("x-jwt-sub".into())));
        assert!(!edits.iter().any(|e| matches!(e, Edit::Set(..))));
    }

    #[test]
    fn a_cors_preflight_passes_without_a_token() {
        let mut h = Harness::new(config_with(json!({})));
        let preflight = [
            (":method", "OPTIONS"),
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
        ];
        assert!(matches!(h.decide(&preflight), Verdict::Allow(_)));
        assert_eq!(
            reason(&h.decide(&[(":method", "OPTIONS")])),
            Some("missing")
        );
    }

    #[test]
    fn an_optional_token_may_be_absent_but_not_invalid() {
        let mut h = Harness::new(config_with(json!({ "rules": [{ "token": "optional" }] })));
        assert!(matches!(h.decide(&[]), Verdict::Allow(_)));
        let expired = fixtures::token(Algorithm::RS256, NOW - 7200);
        assert_eq!(reason(&h.bearer(&expired)), Some("expired"));
    }

    #[test]
    fn missing_claims_are_refused_with_403_and_the_scopes() {
        let mut h = Harness::new(config_with(json!({ "rules": [
            { "match": { "path": {"prefix": "/admin"} }, "claims": [{ "claim": "scope", "scopes": ["admin"] }] },
            { "match": { "path": {"prefix": "/staff"} }, "claims": [{ "claim": "groups", "contains": "staff" }, { "claim": "org.tier", "one_of": [2, 3] }] },
        ]})));
        let token = fixtures::token(Algorithm::RS256, NOW);
        let bearer = format!("Bearer {token}");
        let Verdict::Deny(denial) =
            h.decide(&[(":path", "/admin/users"), ("authorization", &bearer)])
        else {
            panic!("should be refused");
        };
        assert_eq!(denial.status(), 403);
        assert_eq!(denial.scope.as_deref(), Some("admin"));
        assert!(denial
            .challenge("r")
            .contains("error=\"insufficient_scope\""));
        assert!(matches!(
            h.decide(&[(":path", "/staff"), ("authorization", &bearer)]),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn a_cache_hit_skips_verification_but_not_expiry_or_rules() {
        let mut h = Harness::new(config_with(json!({ "rules": [
            { "match": { "path": {"prefix": "/admin"} }, "claims": [{ "claim": "sub", "equals": "root" }] },
        ]})));
        let token = fixtures::token(Algorithm::RS256, NOW);
        assert!(matches!(h.bearer(&token), Verdict::Allow(_)));
        assert!(matches!(h.bearer(&token), Verdict::Allow(_)));
        assert_eq!(
            h.tally,
            Tally {
                cache_hits: 1,
                cache_misses: 1,
                host_checks: 0,
                wasm_checks: 1,
                failed_hits: 0,
            }
        );
        let bearer = format!("Bearer {token}");
        assert_eq!(
            reason(&h.decide(&[(":path", "/admin"), ("authorization", &bearer)])),
            Some("insufficient_claims")
        );
        h.now = Some(NOW + 3600 + 60);
        assert_eq!(reason(&h.bearer(&token)), Some("expired"));
    }

    #[test]
    fn with_several_providers_the_token_goes_to_the_one_of_its_issuer() {
        let mut other = provider();
        other["name"] = json!("other");
        other["issuer"] = json!("https://other.test");
        other["jwks"] =
            json!({ "keys": [fixtures::rsa_jwk(&fixtures::other_rsa_private_key(), "o")] });
        other["claims_to_headers"] = json!([]);
        other["payload_header"] = Value::Null;
        let doc = json!({ "providers": [other, provider()] });
        let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
        assert!(matches!(
            h.bearer(&fixtures::token(Algorithm::RS256, NOW)),
            Verdict::Allow(_)
        ));
        let mut claims = fixtures::claims(NOW);
        claims["iss"] = json!("https://other.test");
        let mut header = fixtures::header(Algorithm::RS256);
        header["kid"] = json!("o");
        let theirs = fixtures::sign(
            Algorithm::RS256,
            &fixtures::Signer::Rsa(fixtures::other_rsa_private_key()),
            &header,
            &claims,
        );
        assert!(matches!(h.bearer(&theirs), Verdict::Allow(_)));
        let mut forged = fixtures::claims(NOW);
        forged["iss"] = json!("https://other.test");
        // Signed by the first provider's key but claiming the second issuer.
        assert_eq!(
            reason(&h.bearer(&fixtures::token_with(Algorithm::RS256, &forged))),
            Some("unknown_kid")
        );
    }

    #[test]
    fn mode_all_needs_a_valid_token_from_every_provider() {
        let mut second = provider();
        second["name"] = json!("second");
        second["from"] = json!([{ "header": "x-second-token" }]);
        second["claims_to_headers"] = json!([]);
        second["payload_header"] = Value::Null;
        let doc = json!({ "providers": [provider(), second], "rules": [{ "mode": "all" }] });
        let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
        let token = fixtures::token(Algorithm::ES384, NOW);
        let bearer = format!("Bearer {token}");
        assert_eq!(
            reason(&h.decide(&[("authorization", &bearer)])),
            Some("missing")
        );
        assert!(matches!(
            h.decide(&[("authorization", &bearer), ("x-second-token", &token)]),
            Verdict::Allow(_)
        ));
        let expired = fixtures::token(Algorithm::ES384, NOW - 7200);
        assert_eq!(
            reason(&h.decide(&[("authorization", &bearer), ("x-second-token", &expired)])),
            Some("expired")
        );
    }

    fn forged(now: u64) -> String {
        fixtures::sign(
            Algorithm::RS256,
            &fixtures::Signer::Rsa(fixtures::other_rsa_private_key()),
            &fixtures::header(Algorithm::RS256),
            &fixtures::claims(now),
        )
    }

    /// A provider reading a bearer header, a query parameter and a cookie.
    fn three_sources() -> Harness {
        let mut p = provider();
        p["from"] = json!([
            { "header": "authorization", "prefix": "Bearer " },
            { "query": "access_token" },
            { "cookie": "jwt" },
        ]);
        Harness::new(config::parse(json!({ "providers": [p] }).to_string().as_bytes()).unwrap())
    }

    #[test]
    fn a_forged_token_beside_a_valid_one_is_refused_wherever_it_is() {
        let mut h = three_sources();
        let good = fixtures::token(Algorithm::ES256, NOW);
        let bad = forged(NOW);
        let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
        let query = |t: &str| (":path", format!("/items?access_token={t}"));
        let cookie = |t: &str| ("cookie", format!("theme=dark; jwt={t}"));
        type Place = fn(&str) -> (&'static str, String);
        let places: [(&str, Place); 3] = [("header", bearer), ("query", query), ("cookie", cookie)];
        for (good_at, good_place) in &places {
            for (bad_at, bad_place) in &places {
                if good_at == bad_at {
                    continue;
                }
                let (k1, v1) = good_place(&good);
                let (k2, v2) = bad_place(&bad);
                let verdict = h.decide(&[(k1, &v1), (k2, &v2)]);
                assert_eq!(
                    reason(&verdict),
                    Some("bad_signature"),
                    "valid in the {good_at}, forged in the {bad_at}"
                );
            }
        }
        // Valid everywhere: allowed, and every location taken out.
        let path = format!("/items?access_token={good}&page=2");
        let (k, v) = bearer(&good);
        let (c, cv) = cookie(&good);
        let Verdict::Allow(edits) = h.decide(&[(k, &v), (":path", &path), (c, &cv)]) else {
            panic!("three valid tokens pass");
        };
        assert!(edits.contains(&Edit::Remove("authorization".into())));
        assert!(edits.contains(&Edit::SetPath("/items?page=2".into())));
        assert!(edits.contains(&Edit::SetCookie(Some(b"theme=dark".to_vec()))));
        // The same token in two places is verified once.
        assert_eq!(h.tally.cache_misses, 1 + 1 + 1 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn a_forged_token_in_a_second_providers_header_is_refused_in_any_and_all_modes() {
        for mode in ["any", "all"] {
            let mut second = provider();
            second["name"] = json!("second");
            second["from"] = json!([{ "header": "x-second-token" }]);
            second["claims_to_headers"] = json!([]);
            second["payload_header"] = Value::Null;
            let doc = json!({ "providers": [provider(), second], "rules": [{ "mode": mode }] });
            let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
            let good = fixtures::token(Algorithm::RS256, NOW);
            let bearer = format!("Bearer {good}");
            let bad = forged(NOW);
            assert_eq!(
                reason(&h.decide(&[("authorization", &bearer), ("x-second-token", &bad)])),
                Some("bad_signature"),
                "{mode}"
            );
            let bad_bearer = format!("Bearer {bad}");
            assert_eq!(
                reason(&h.decide(&[("authorization", &bad_bearer), ("x-second-token", &good)])),
                Some("bad_signature"),
                "{mode}"
            );
            let Verdict::Allow(edits) =
                h.decide(&[("authorization", &bearer), ("x-second-token", &good)])
            else {
                panic!("{mode}: two valid tokens pass");
            };
            assert!(
                edits.contains(&Edit::Remove("authorization".into())),
                "{mode}"
            );
            assert!(
                edits.contains(&Edit::Remove("x-second-token".into())),
                "{mode}"
            );
        }
    }

    #[test]
    fn an_optional_token_beside_a_forged_one_is_refused() {
        let mut h = Harness::new(config_with(json!({ "rules": [{ "token": "optional" }] })));
        let mut p = provider();
        p["from"] =
            json!([{ "header": "authorization", "prefix": "Bearer " }, { "cookie": "jwt" }]);
        h.config = config::parse(
            json!({ "providers": [p], "rules": [{ "token": "optional" }] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let good = format!("Bearer {}", fixtures::token(Algorithm::RS256, NOW));
        let bad = format!("jwt={}", forged(NOW));
        assert_eq!(
            reason(&h.decide(&[("authorization", &good), ("cookie", &bad)])),
            Some("bad_signature")
        );
    }

    #[test]
    fn a_forwarded_token_stays_and_only_its_location_does() {
        let mut keep = provider();
        keep["forward"] = json!(true);
        keep["from"] = json!([{ "header": "authorization", "prefix": "Bearer " }]);
        let mut strip = provider();
        strip["name"] = json!("strip");
        strip["from"] = json!([{ "cookie": "jwt" }]);
        strip["claims_to_headers"] = json!([]);
        strip["payload_header"] = Value::Null;
        let doc = json!({ "providers": [keep, strip] });
        let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
        let good = fixtures::token(Algorithm::RS256, NOW);
        let bearer = format!("Bearer {good}");
        let cookie = format!("jwt={good}; theme=dark");
        let Verdict::Allow(edits) = h.decide(&[("authorization", &bearer), ("cookie", &cookie)])
        else {
            panic!("should pass");
        };
        // The same token is in both places; the forwarding provider verified it first, so
        // it stays in both: it is valid, and the provider asked for it to be kept.
        assert!(!edits.contains(&Edit::Remove("authorization".into())));
        let other = fixtures::token(Algorithm::ES256, NOW);
        let cookie = format!("jwt={other}; theme=dark");
        let Verdict::Allow(edits) = h.decide(&[("authorization", &bearer), ("cookie", &cookie)])
        else {
            panic!("should pass");
        };
        assert!(!edits.contains(&Edit::Remove("authorization".into())));
        assert!(edits.contains(&Edit::SetCookie(Some(b"theme=dark".to_vec()))));
    }

    #[test]
    fn without_a_clock_no_token_is_accepted() {
        let mut h = Harness::new(config_with(json!({ "rules": [
            { "match": { "path": {"prefix": "/health"} }, "token": "ignored" },
        ]})));
        h.now = None;
        let Verdict::Deny(denial) = h.bearer(&fixtures::token(Algorithm::RS256, NOW)) else {
            panic!("refused without a clock");
        };
        assert_eq!(denial.reason, Reason::ClockUnavailable);
        assert_eq!(denial.status(), 503);
        assert_eq!(reason(&h.decide(&[])), Some("missing"));
        assert!(matches!(
            h.decide(&[(":path", "/health")]),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn a_provider_accepts_only_its_algorithms_before_any_signature_work() {
        let mut p = provider();
        p["algorithms"] = json!(["ES256"]);
        let mut h = Harness::new(
            config::parse(json!({ "providers": [p] }).to_string().as_bytes()).unwrap(),
        );
        assert!(matches!(
            h.bearer(&fixtures::token(Algorithm::ES256, NOW)),
            Verdict::Allow(_)
        ));
        let Verdict::Deny(denial) = h.bearer(&fixtures::token(Algorithm::RS256, NOW)) else {
            panic!("RS256 is not accepted");
        };
        assert_eq!(denial.description, "the token's algorithm is not accepted");
        assert_eq!(
            h.tally.wasm_checks, 1,
            "only the ES256 signature was checked"
        );
    }

    #[test]
    fn a_replayed_forged_token_is_refused_without_verifying_it_again() {
        let mut h = Harness::new(config_with(json!({})));
        let bad = forged(NOW);
        for _ in 0..3 {
            assert_eq!(reason(&h.bearer(&bad)), Some("bad_signature"));
        }
        assert_eq!(h.tally.failed_hits, 2);
        assert_eq!(h.tally.wasm_checks, 0);
        h.now = Some(NOW + crate::failed::TTL_SECS);
        assert_eq!(reason(&h.bearer(&bad)), Some("bad_signature"));
        assert_eq!(h.tally.failed_hits, 2, "forgotten after its time");
    }

    #[test]
    fn remote_keys_are_fetched_when_the_store_says_so() {
        let doc = json!({ "providers": [{ "name": "idp", "issuer": fixtures::ISSUER, "remote_jwks": { "cluster": "jwks", "uri": "https://idp.test/jwks" } }] });
        let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
        let token = fixtures::token(Algorithm::RS256, NOW);
        h.keys = Scripted(KeyLookup::Fetch);
        assert_eq!(h.bearer(&token), Verdict::Fetch(0));
        h.keys = Scripted(KeyLookup::Wait(5));
        assert_eq!(
            h.bearer(&token),
            Verdict::Wait {
                source: 0,
                until_ms: 5
            }
        );
        h.keys = Scripted(KeyLookup::Unavailable);
        assert_eq!(reason(&h.bearer(&token)), Some("unknown_kid"));
        let set = crate::jwks::parse_value(
            &fixtures::public_jwks(),
            crate::jwks::Limits {
                max_bytes: 1 << 20,
                max_keys: 8,
            },
            crate::jwks::Strictness::Remote,
        )
        .unwrap()
        .set;
        h.keys = Scripted(KeyLookup::Ready(Rc::new(set)));
        assert!(matches!(h.bearer(&token), Verdict::Allow(_)));
    }

    #[test]
    fn a_token_in_a_query_parameter_or_cookie_is_taken_out() {
        let mut p = provider();
        p["from"] = json!([{ "query": "access_token" }, { "cookie": "jwt" }]);
        let doc = json!({ "providers": [p] });
        let mut h = Harness::new(config::parse(doc.to_string().as_bytes()).unwrap());
        let token = fixtures::token(Algorithm::EdDSA, NOW);
        let path = format!("/items?access_token={token}&page=2");
        let Verdict::Allow(edits) = h.decide(&[(":path", &path)]) else {
            panic!("should pass");
        };
        assert!(edits.contains(&Edit::SetPath("/items?page=2".into())));
        let cookie = format!("theme=dark; jwt={token}");
        let Verdict::Allow(edits) = h.decide(&[("cookie", &cookie)]) else {
            panic!("should pass");
        };
        assert!(edits.contains(&Edit::SetCookie(Some(b"theme=dark".to_vec()))));
    }
}
