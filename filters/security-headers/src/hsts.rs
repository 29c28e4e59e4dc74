//! Strict-Transport-Security checks (RFC 6797): a whole-number `max-age`, each directive at
//! most once, and the rules the browsers' preload list enforces when `preload` is asked for.

/// One year: the least `max-age` the browsers' preload list accepts.
const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;

/// Checks an HSTS value such as `max-age=63072000; includeSubDomains` and returns it in
/// canonical form: `max-age=N`, then `includeSubDomains`, then `preload`.
pub fn check(value: &str) -> Result<String, String> {
    let mut max_age: Option<u64> = None;
    let mut include_subdomains = false;
    let mut preload = false;
    for directive in value.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim())),
            None => (directive, None),
        };
        let lower = name.to_ascii_lowercase();
        let already = match lower.as_str() {
            "max-age" => {
                let already = max_age.is_some();
                max_age = Some(parse_max_age(argument.unwrap_or(""))?);
                already
            }
            "includesubdomains" | "preload" => {
                if let Some(argument) = argument {
                    return Err(format!("{name} takes no value, got {argument:?}"));
                }
                let flag = if lower == "preload" {
                    &mut preload
                } else {
                    &mut include_subdomains
                };
                std::mem::replace(flag, true)
            }
            _ => {
                return Err(format!(
                    "unknown directive {name:?}; expected max-age, includeSubDomains or preload"
                ))
            }
        };
        if already {
            return Err(format!(
                "{name} appears twice; browsers ignore the whole header when a directive repeats"
            ));
        }
    }
    let Some(max_age) = max_age else {
        return Err(
            "max-age is required, for example \"max-age=63072000; includeSubDomains\"".into(),
        );
    };
    if preload && !(include_subdomains && max_age >= PRELOAD_MIN_MAX_AGE) {
        return Err(format!(
            "preload needs includeSubDomains and a max-age of at least {PRELOAD_MIN_MAX_AGE} \
             (one year), as the browsers' preload list requires"
        ));
    }
    let mut out = format!("max-age={max_age}");
    if include_subdomains {
        out.push_str("; includeSubDomains");
    }
    if preload {
        out.push_str("; preload");
    }
    Ok(out)
}

/// Reads `max-age`'s value: digits, bare or (RFC 6797 section 6.1 allows a quoted-string)
/// inside one pair of double quotes, `max-age="31536000"`.
fn parse_max_age(text: &str) -> Result<u64, String> {
    let digits = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    let whole = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match digits.parse::<u64>() {
        Ok(seconds) if whole => Ok(seconds),
        _ => Err(format!(
            "max-age must be a whole number of seconds, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_directives_canonically_in_any_case_and_order() {
        assert_eq!(
            check(" PRELOAD ; includesubdomains; Max-Age=63072000 ").unwrap(),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert_eq!(check("max-age=0").unwrap(), "max-age=0");
    }

    #[test]
    fn accepts_the_quoted_max_age_rfc_6797_allows_and_renders_it_bare() {
        assert_eq!(
            check("max-age=\"31536000\"; includeSubDomains; preload").unwrap(),
            "max-age=31536000; includeSubDomains; preload"
        );
        assert_eq!(check("max-age = \"0\"").unwrap(), "max-age=0");
    }

    #[test]
    fn max_age_must_be_a_whole_number_of_seconds() {
        assert_eq!(
            check("max-age=abc").unwrap_err(),
            r#"max-age must be a whole number of seconds, got "abc""#
        );
        for bad in [
            "max-age=",
            "max-age=-1",
            "max-age=1.5",
            "max-age=\"10",
            "max-age=10\"",
            "max-age=\"\"",
            "max-age=\"",
            "max-age=\"1 0\"",
            "max-age=\"abc\"",
            "max-age=\"\"10\"\"",
            "max-age=99999999999999999999999",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_missing_repeated_and_unknown_directives() {
        assert!(check("includeSubDomains")
            .unwrap_err()
            .contains("max-age is required"));
        assert!(check("max-age=1; max-age=2")
            .unwrap_err()
            .contains("appears twice"));
        assert!(check("max-age=1; includeSubdomain")
            .unwrap_err()
            .contains("unknown directive"));
        assert!(check("max-age=1; preload=yes").is_err());
    }

    #[test]
    fn preload_needs_a_year_and_subdomains() {
        assert!(check("max-age=600; includeSubDomains; preload")
            .unwrap_err()
            .contains("preload needs"));
        assert!(check("max-age=31536000; preload").is_err());
        assert!(check("max-age=31536000; includeSubDomains; preload").is_ok());
    }
}
