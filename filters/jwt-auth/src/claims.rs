//! Registered claims (RFC 7519 §4.1): time checks with clock skew, issuer and audience, and
//! reading claims by path for authorization rules and forwarded headers.

use serde_json::{Map, Value};
use std::fmt;

/// The claims object of a token.
pub type Claims = Map<String, Value>;

/// How a provider checks a token's times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRules {
    /// Allowed clock difference with the issuer, in seconds.
    pub skew_secs: u64,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime_secs: Option<u64>,
}

/// Why claims were refused. The text is sent to the client as `error_description`, so it
/// quotes nothing from the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// A registered claim has the wrong type.
    Malformed(&'static str),
    /// `exp` is required and absent.
    MissingExpiry,
    /// `exp` has passed.
    Expired,
    /// `nbf` has not come yet.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInTheFuture,
    /// `exp - iat` exceeds the configured maximum.
    LifetimeTooLong,
    /// `iss` is absent or not the provider's issuer.
    WrongIssuer,
    /// No `aud` value is an accepted audience.
    WrongAudience,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Malformed(what) => write!(f, "the token's {what}"),
            ClaimError::MissingExpiry => f.write_str("the token has no expiry (exp)"),
            ClaimError::Expired => f.write_str("the token has expired"),
            ClaimError::NotYetValid => f.write_str("the token is not valid yet (nbf)"),
            ClaimError::IssuedInTheFuture => f.write_str("the token is issued in the future (iat)"),
            ClaimError::LifetimeTooLong => {
                f.write_str("the token's lifetime exceeds the allowed maximum")
            }
            ClaimError::WrongIssuer => f.write_str("the token's issuer is not accepted"),
            ClaimError::WrongAudience => f.write_str("the token's audience is not accepted"),
        }
    }
}

/// The time claims of a token, in whole seconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    /// `exp`.
    pub exp: Option<i64>,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `iat`.
    pub iat: Option<i64>,
}

/// 2^64 as a double: the first NumericDate out of range.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A NumericDate (RFC 7519 §2) read as Envoy's `jwt_authn` reads one (its
/// `StructUtils::GetUInt64`): any JSON number from 0 up to, not including, 2^64 once
/// converted to a double, with any fraction dropped. A negative number, or one of 2^64 or
/// more (`1e30`, `18446744073709551615`, which rounds to 2^64), is malformed, never "far
/// future" or "long ago". Beyond `i64::MAX` a date saturates: it is centuries away.
fn numeric_date(
    claims: &Claims,
    name: &str,
    not_a_number: &'static str,
    out_of_range: &'static str,
) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let as_double = n.as_f64().ok_or(ClaimError::Malformed(out_of_range))?;
            if !(0.0..TWO_POW_64).contains(&as_double) {
                return Err(ClaimError::Malformed(out_of_range));
            }
            // Integers are read exactly; a fraction is truncated, as a cast does.
            let secs = n.as_u64().unwrap_or(as_double as u64);
            Ok(Some(i64::try_from(secs).unwrap_or(i64::MAX)))
        }
        Some(_) => Err(ClaimError::Malformed(not_a_number)),
    }
}

/// Reads `exp`, `nbf` and `iat`.
pub fn times(claims: &Claims) -> Result<Times, ClaimError> {
    Ok(Times {
        exp: numeric_date(
            claims,
            "exp",
            "exp claim is not a number",
            "exp claim is out of range",
        )?,
        nbf: numeric_date(
            claims,
            "nbf",
            "nbf claim is not a number",
            "nbf claim is out of range",
        )?,
        iat: numeric_date(
            claims,
            "iat",
            "iat claim is not a number",
            "iat claim is out of range",
        )?,
    })
}

/// Checks `times` at `now` (seconds since the epoch).
pub fn check_times(times: &Times, now: u64, rules: &TimeRules) -> Result<(), ClaimError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let skew = i64::try_from(rules.skew_secs).unwrap_or(i64::MAX);
    match times.exp {
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        Some(exp) if now >= exp.saturating_add(skew) => return Err(ClaimError::Expired),
        None if rules.require_exp => return Err(ClaimError::MissingExpiry),
        _ => {}
    }
    if times.nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(ClaimError::NotYetValid);
    }
    if times.iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(ClaimError::IssuedInTheFuture);
    }
    if let Some(max) = rules.max_lifetime_secs {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let Some(exp) = times.exp else {
            return Err(ClaimError::MissingExpiry);
        };
        let from = times.iat.unwrap_or(now);
        if exp.saturating_sub(from) > max {
            return Err(ClaimError::LifetimeTooLong);
        }
    }
    Ok(())
}

/// Checks `iss` against the provider's issuer, when it has one.
pub fn check_issuer(claims: &Claims, issuer: Option<&str>) -> Result<(), ClaimError> {
    match (issuer, claims.get("iss")) {
        (None, _) => Ok(()),
        (Some(expected), Some(Value::String(iss))) if iss == expected => Ok(()),
        _ => Err(ClaimError::WrongIssuer),
    }
}

/// Checks that `aud` (a string or an array of strings) holds one of `audiences`; an empty
/// list accepts any audience.
pub fn check_audience(claims: &Claims, audiences: &[String]) -> Result<(), ClaimError> {
    if audiences.is_empty() {
        return Ok(());
    }
    let accepted = |v: &Value| {
        v.as_str()
            .is_some_and(|aud| audiences.iter().any(|a| a == aud))
    };
    let ok = match claims.get("aud") {
        Some(Value::Array(values)) => values.iter().any(accepted),
        Some(value) => accepted(value),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ClaimError::WrongAudience)
    }
}

/// The claim at `path` (object keys, outermost first).
pub fn lookup<'a>(claims: &'a Claims, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// A claim rendered as a header value: strings as they are, numbers and booleans as JSON
/// text, arrays joined with `,`, objects as compact JSON. `None` for `null`, an empty
/// result, or any text a header cannot carry (control characters).
///
/// An array is refused whole (`None`) when one of its elements holds a `,` or starts or
/// ends with a space or tab: a backend splitting the header on `,` (and trimming, as HTTP
/// lists are read) would see other elements than the token holds, so `["a,admin"]`
/// could pass for `["a", "admin"]`.
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                let part = match item {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                let ambiguous = part.contains(',')
                    || part.starts_with([' ', '\t'])
                    || part.ends_with([' ', '\t']);
                if ambiguous {
                    return None;
                }
                parts.push(part);
            }
            parts.join(",")
        }
        other => other.to_string(),
    };
    let printable = text.chars().all(|c| c == '\t' || !c.is_control());
    (printable && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: TimeRules = TimeRules {
        skew_secs: 60,
        require_exp: true,
        max_lifetime_secs: None,
    };

    fn claims(value: Value) -> Claims {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn check(value: Value, now: u64, rules: &TimeRules) -> Result<(), ClaimError> {
        check_times(&times(&claims(value))?, now, rules)
    }

    #[test]
    fn a_token_expires_at_exp_plus_the_clock_skew() {
        let token = json!({ "exp": 1000 });
        assert_eq!(check(token.clone(), 1059, &RULES), Ok(()));
        assert_eq!(check(token, 1060, &RULES), Err(ClaimError::Expired));
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_refused_beyond_the_skew() {
        assert_eq!(
            check(json!({ "exp": 9999, "nbf": 1060 }), 1000, &RULES),
            Ok(())
        );
        assert_eq!(
            check(json!({ "exp": 9999, "nbf": 1061 }), 1000, &RULES),
            Err(ClaimError::NotYetValid)
        );
        assert_eq!(
            check(json!({ "exp": 9999, "iat": 1060 }), 1000, &RULES),
            Ok(())
        );
        assert_eq!(
            check(json!({ "exp": 9999, "iat": 1061 }), 1000, &RULES),
            Err(ClaimError::IssuedInTheFuture)
        );
    }

    #[test]
    fn exp_is_required_unless_configured_otherwise() {
        assert_eq!(
            check(json!({}), 1000, &RULES),
            Err(ClaimError::MissingExpiry)
        );
        let lenient = TimeRules {
            require_exp: false,
            ..RULES
        };
        assert_eq!(check(json!({}), 1000, &lenient), Ok(()));
    }

    #[test]
    fn the_maximum_lifetime_counts_from_iat_or_from_now() {
        let rules = TimeRules {
            max_lifetime_secs: Some(3600),
            ..RULES
        };
        assert_eq!(
            check(json!({ "iat": 1000, "exp": 4600 }), 1000, &rules),
            Ok(())
        );
        assert_eq!(
            check(json!({ "iat": 1000, "exp": 4601 }), 1000, &rules),
            Err(ClaimError::LifetimeTooLong)
        );
        assert_eq!(
            check(json!({ "exp": 4601 }), 1000, &rules),
            Err(ClaimError::LifetimeTooLong)
        );
    }

    #[test]
    fn numeric_dates_follow_envoys_jwt_authn() {
        let malformed = |value: Value| {
            matches!(
                check(json!({ "exp": 9999, "nbf": value }), 1000, &RULES),
                Err(ClaimError::Malformed(_))
            )
        };
        // Negative, or 2^64 and beyond once read as a double: malformed.
        for out in [
            json!(-1),
            json!(-0.5),
            json!(-1e300),
            json!(1e30),
            json!(1.8446744073709552e19),
            json!(u64::MAX),
        ] {
            assert!(malformed(out.clone()), "{out}");
        }
        assert!(matches!(
            check(json!({ "exp": 1e30 }), 1000, &RULES),
            Err(ClaimError::Malformed("exp claim is out of range"))
        ));
        assert!(matches!(
            check(json!({ "exp": 9999, "iat": -1 }), 1000, &RULES),
            Err(ClaimError::Malformed("iat claim is out of range"))
        ));
        // Fractions are truncated; the largest doubles below 2^64 are centuries away.
        assert_eq!(check(json!({ "exp": 1059.9 }), 1000, &RULES), Ok(()));
        assert_eq!(
            check(json!({ "exp": 1000.9 }), 1060, &RULES),
            Err(ClaimError::Expired)
        );
        assert_eq!(check(json!({ "exp": 1.8e19 }), 1000, &RULES), Ok(()));
        assert_eq!(
            check(json!({ "exp": 18446744073709549568u64 }), 1000, &RULES),
            Ok(())
        );
        assert_eq!(
            check(json!({ "exp": 9999, "nbf": -0.0 }), 1000, &RULES),
            Ok(())
        );
        assert_eq!(
            check(json!({ "exp": 9999, "nbf": 0 }), u64::MAX, &RULES),
            Err(ClaimError::Expired)
        );
        let max = TimeRules {
            max_lifetime_secs: Some(u64::MAX),
            ..RULES
        };
        assert_eq!(
            check(json!({ "exp": 1.8e19, "iat": 0 }), 1000, &max),
            Ok(())
        );
    }

    #[test]
    fn dates_that_are_not_numbers_are_malformed() {
        for bad in [
            json!({ "exp": "1000" }),
            json!({ "exp": 1, "nbf": true }),
            json!({ "exp": 1, "iat": [] }),
        ] {
            assert!(matches!(
                check(bad, 0, &RULES),
                Err(ClaimError::Malformed(_))
            ));
        }
    }

    #[test]
    fn the_issuer_must_match_exactly_when_configured() {
        let c = claims(json!({ "iss": "https://a.example" }));
        assert_eq!(check_issuer(&c, Some("https://a.example")), Ok(()));
        assert_eq!(
            check_issuer(&c, Some("https://a.example/")),
            Err(ClaimError::WrongIssuer)
        );
        assert_eq!(check_issuer(&c, None), Ok(()));
        assert_eq!(
            check_issuer(&claims(json!({ "iss": 1 })), Some("1")),
            Err(ClaimError::WrongIssuer)
        );
        assert_eq!(
            check_issuer(&claims(json!({})), Some("x")),
            Err(ClaimError::WrongIssuer)
        );
    }

    #[test]
    fn any_audience_value_may_match_any_accepted_audience() {
        let accepted = vec!["api".to_string(), "admin".to_string()];
        assert_eq!(
            check_audience(&claims(json!({ "aud": "api" })), &accepted),
            Ok(())
        );
        assert_eq!(
            check_audience(&claims(json!({ "aud": ["x", "admin"] })), &accepted),
            Ok(())
        );
        assert_eq!(
            check_audience(&claims(json!({ "aud": ["x"] })), &accepted),
            Err(ClaimError::WrongAudience)
        );
        assert_eq!(
            check_audience(&claims(json!({ "aud": ["x"] })), &[]),
            Ok(())
        );
        assert_eq!(
            check_audience(&claims(json!({})), &accepted),
            Err(ClaimError::WrongAudience)
        );
        assert_eq!(
            check_audience(&claims(json!({ "aud": [["api"]] })), &accepted),
            Err(ClaimError::WrongAudience)
        );
    }

    #[test]
    fn claims_are_found_by_nested_path() {
        let c = claims(json!({ "realm": { "roles": ["a"] }, "dotted.key": 1 }));
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(lookup(&c, &path(&["realm", "roles"])), Some(&json!(["a"])));
        assert_eq!(lookup(&c, &path(&["dotted.key"])), Some(&json!(1)));
        assert_eq!(lookup(&c, &path(&["realm", "roles", "x"])), None);
        assert_eq!(lookup(&c, &path(&[])), None);
    }

    #[test]
    fn claims_render_as_header_values() {
        assert_eq!(header_value(&json!("ann")).as_deref(), Some("ann"));
        assert_eq!(header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(
            header_value(&json!(["a", "b", 3])).as_deref(),
            Some("a,b,3")
        );
        assert_eq!(
            header_value(&json!({ "k": "v" })).as_deref(),
            Some(r#"{"k":"v"}"#)
        );
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!([])), None);
        assert_eq!(header_value(&json!("a\r\nx-admin: 1")), None);
        assert_eq!(header_value(&json!("nul\0")), None);
    }

    #[test]
    fn an_array_element_that_a_backend_would_split_sets_no_header() {
        for ambiguous in [
            json!(["staff", "dev,admin"]),
            json!(["a", ",admin"]),
            json!(["a", " admin"]),
            json!(["a", "admin\t"]),
            json!([["x", "y"]]),
            json!([{ "k": 1, "l": 2 }]),
        ] {
            assert_eq!(header_value(&ambiguous), None, "{ambiguous}");
        }
        // A lone string may hold commas: it is one value, as the token says.
        assert_eq!(header_value(&json!("a, b")).as_deref(), Some("a, b"));
        assert_eq!(
            header_value(&json!(["a b", [1], { "k": 1 }])).as_deref(),
            Some(r#"a b,[1],{"k":1}"#)
        );
    }
}
