//! Permissions-Policy checks: the structured-field dictionary syntax browsers parse
//! (`camera=(), fullscreen=(self "https://app.example.com")`), one entry per feature, and a
//! clear message for the older Feature-Policy syntax, which browsers silently ignore here.

/// Checks a policy and returns it with entries separated by `", "`. Feature names are not
/// checked against a list: browsers add features often and ignore ones they do not know.
pub fn check(policy: &str) -> Result<String, String> {
    if policy.contains('\'') {
        return Err(
            "this looks like the old Feature-Policy syntax (camera 'none'); Permissions-Policy \
             is written camera=() or fullscreen=(self \"https://app.example.com\")"
                .into(),
        );
    }
    let mut features: Vec<&str> = Vec::new();
    for entry in policy.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry; separate entries with one comma".into());
        }
        let (member, params) = match entry.split_once(';') {
            Some((member, params)) => (member.trim(), Some(params)),
            None => (entry, None),
        };
        let Some((feature, allowlist)) = member.split_once('=') else {
            return Err(format!(
                "{entry:?} has no allowlist; write {member}=() to disable it or {member}=(self) \
                 to allow this origin"
            ));
        };
        if !is_key(feature) {
            return Err(format!(
                "{feature:?} is not a feature name (lowercase letters, digits and -)"
            ));
        }
        if features.contains(&feature) {
            return Err(format!(
                "feature {feature:?} appears twice; merge its allowlists"
            ));
        }
        features.push(feature);
        check_allowlist(feature, allowlist)?;
        if let Some(params) = params {
            check_params(feature, params)?;
        }
    }
    Ok(policy
        .split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(", "))
}

/// A structured-field key: `lcalpha / "*"` then `lcalpha / DIGIT / "_" / "-" / "." / "*"`.
fn is_key(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
}

fn check_allowlist(feature: &str, allowlist: &str) -> Result<(), String> {
    if allowlist == "*" || allowlist == "self" {
        return Ok(());
    }
    let Some(inner) = allowlist
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return Err(format!(
            "{feature}: allowlist {allowlist:?} must be *, self, or a list in parentheses such as \
             () or (self \"https://app.example.com\")"
        ));
    };
    for item in inner.split(' ').filter(|item| !item.is_empty()) {
        let ok = item == "self"
            || item == "*"
            || item
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .is_some_and(is_origin);
        if !ok {
            return Err(format!(
                "{feature}: {item:?} is not self, * or a quoted origin such as \"https://app.example.com\""
            ));
        }
    }
    Ok(())
}

/// `https://app.example.com` or `https://app.example.com:8443`, no path.
fn is_origin(text: &str) -> bool {
    let Some((scheme, host)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:*[]".contains(&b));
    scheme_ok && host_ok
}

/// Parameters such as `;report-to=endpoint`.
fn check_params(feature: &str, params: &str) -> Result<(), String> {
    for param in params.split(';').map(str::trim) {
        let (key, value) = param.split_once('=').unwrap_or((param, "?1"));
        let value_ok = !value.is_empty()
            && (value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.*:/?".contains(&b))
                || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"')));
        if !is_key(key) || !value_ok {
            return Err(format!("{feature}: malformed parameter {param:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_structured_allowlists() {
        assert_eq!(
            check("camera=(),geolocation=(self \"https://maps.example.com\"),  fullscreen=*, sync-xhr=self").unwrap(),
            "camera=(), geolocation=(self \"https://maps.example.com\"), fullscreen=*, sync-xhr=self"
        );
        check("microphone=();report-to=pp").unwrap();
    }

    #[test]
    fn explains_the_old_feature_policy_syntax() {
        assert!(check("camera 'none'")
            .unwrap_err()
            .contains("old Feature-Policy syntax"));
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in [
            "camera",
            "Camera=()",
            "camera=(), camera=(self)",
            "camera=none",
            "geolocation=(https://maps.example.com)",
            "geolocation=(self \"maps.example.com\")",
            "camera=(),,microphone=()",
            "camera=();bad param",
            "",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
