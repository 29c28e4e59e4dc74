//! Denials: why a request was refused, the status it gets, and the `WWW-Authenticate`
//! challenge of RFC 6750 §3.

/// Why a request was refused; each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No token where one was required.
    Missing,
    /// The token could not be read (segments, base64, JSON, size, duplicates).
    Malformed,
    /// The signature is absent, of a refused algorithm, or does not verify.
    BadSignature,
    /// `exp` has passed (or the lifetime is longer than allowed).
    Expired,
    /// `nbf` or `iat` is in the future.
    NotYetValid,
    /// `iss` is not a provider's issuer.
    WrongIssuer,
    /// `aud` holds no accepted audience.
    WrongAudience,
    /// No key of the issuer has the token's `kid`, or no key could be had.
    UnknownKid,
    /// The token is valid but lacks a required claim.
    InsufficientClaims,
    /// The proxy's clock could not be read, so no token's times can be checked.
    ClockUnavailable,
}

impl Reason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Reason; 10] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::UnknownKid,
        Reason::InsufficientClaims,
        Reason::ClockUnavailable,
    ];

    /// The reason's name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::UnknownKid => "unknown_kid",
            Reason::InsufficientClaims => "insufficient_claims",
            Reason::ClockUnavailable => "clock_unavailable",
        }
    }
}

/// A refusal, ready to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub reason: Reason,
    /// A sentence for `error_description` and the body. Never quotes the token.
    pub description: String,
    /// The scopes that would have sufficed, for the challenge's `scope` attribute.
    pub scope: Option<String>,
}

impl Denial {
    /// A denial for `reason` described by `description`.
    pub fn new(reason: Reason, description: impl Into<String>) -> Self {
        Denial {
            reason,
            description: description.into(),
            scope: None,
        }
    }

    /// 403 for a valid token without the required claims, 503 when the proxy cannot
    /// tell the time (the token is not at fault), 401 for everything else.
    pub fn status(&self) -> u32 {
        match self.reason {
            Reason::InsufficientClaims => 403,
            Reason::ClockUnavailable => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 error code: none when no token was sent (§3.1: the challenge then
    /// carries no error), `insufficient_scope` for 403, `invalid_token` otherwise.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.reason {
            Reason::Missing | Reason::ClockUnavailable => None,
            Reason::InsufficientClaims => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The short code of the JSON body and of Envoy's response details.
    pub fn body_code(&self) -> String {
        format!("jwt_{}", self.reason.name())
    }

    /// The `WWW-Authenticate` value for `realm`.
    pub fn challenge(&self, realm: &str) -> String {
        let mut value = format!("Bearer realm=\"{}\"", quoted(realm));
        if let Some(code) = self.error_code() {
            value.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quoted(&self.description)
            ));
        }
        if let Some(scope) = &self.scope {
            value.push_str(&format!(", scope=\"{}\"", quoted(scope)));
        }
        value
    }
}

/// RFC 6750 §3 allows only `%x20-21 / %x23-5B / %x5D-7E` inside these quoted strings;
/// anything else becomes a space.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_gets_a_bare_challenge() {
        let denial = Denial::new(Reason::Missing, "a token is required");
        assert_eq!(denial.status(), 401);
        assert_eq!(denial.challenge("api"), "Bearer realm=\"api\"");
    }

    #[test]
    fn an_invalid_token_gets_invalid_token() {
        let denial = Denial::new(Reason::Expired, "the token has expired");
        assert_eq!(denial.status(), 401);
        assert_eq!(
            denial.challenge("api"),
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
    }

    #[test]
    fn missing_claims_get_403_insufficient_scope_with_the_scope() {
        let mut denial = Denial::new(
            Reason::InsufficientClaims,
            "the token lacks the scopes read write",
        );
        denial.scope = Some("read write".into());
        assert_eq!(denial.status(), 403);
        assert_eq!(
            denial.challenge("api"),
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token lacks the scopes read write\", scope=\"read write\""
        );
    }

    #[test]
    fn quoted_strings_cannot_be_broken_out_of() {
        let denial = Denial::new(Reason::Malformed, "a \"quote\" \\ and\r\nnewline é");
        assert_eq!(
            denial.challenge("r\"ealm"),
            "Bearer realm=\"r ealm\", error=\"invalid_token\", error_description=\"a  quote    and  newline  \""
        );
    }

    #[test]
    fn every_reason_has_a_distinct_name() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
