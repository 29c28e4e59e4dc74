//! Which per-path override a request path selects. Matching is on the path without its query,
//! and only on paths in normal form: a path with dot segments, doubled or encoded slashes, or
//! encoded dots could be resolved by the upstream to a different resource than its text says
//! (`/docs/..%2fadmin`), so it never selects an override and gets the top-level headers.

/// How an override matches the request path, as in Envoy's route match. Case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this text (`/docs/` matches `/docs/a` but not `/docs`).
    Prefix(String),
    /// The path is exactly this text.
    Exact(String),
}

impl PathMatch {
    /// Whether `path` (no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
        }
    }
}

/// The index of the first matcher that matches the request target (`:path`, query and all),
/// or `None` when none does or the path is not in normal form.
pub fn select<'a>(
    matchers: impl IntoIterator<Item = &'a PathMatch>,
    target: &str,
) -> Option<usize> {
    let path = path_only(target);
    if !is_normal(path) {
        return None;
    }
    matchers.into_iter().position(|m| m.matches(path))
}

/// The path of a request target: everything before `?` or `#`.
pub fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// Whether `path` reads the same to every server: absolute, no `.` or `..` segment (also
/// with `;parameters`), no `//`, no backslash, no percent-encoded `.`, `/` or `\`.
pub fn is_normal(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains('\\') {
        return false;
    }
    let encoded = [b"%2e", b"%2f", b"%5c"];
    if path
        .as_bytes()
        .windows(3)
        .any(|w| encoded.iter().any(|e| w.eq_ignore_ascii_case(*e)))
    {
        return false;
    }
    !path.split('/').any(|segment| {
        let name = segment.split(';').next().unwrap_or(segment);
        name == "." || name == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matchers() -> Vec<PathMatch> {
        vec![
            PathMatch::Exact("/docs/legacy".into()),
            PathMatch::Prefix("/docs/".into()),
        ]
    }

    #[test]
    fn the_first_matching_override_wins_and_the_query_is_ignored() {
        let m = matchers();
        assert_eq!(select(&m, "/docs/legacy?x=1"), Some(0));
        assert_eq!(select(&m, "/docs/legacy/page"), Some(1));
        assert_eq!(select(&m, "/docs/intro#top"), Some(1));
        assert_eq!(select(&m, "/docs"), None);
        assert_eq!(select(&m, "/DOCS/intro"), None);
        assert_eq!(select(&m, "/app?next=/docs/"), None);
    }

    #[test]
    fn paths_not_in_normal_form_never_select_an_override() {
        let m = matchers();
        for tricky in [
            "/docs/../admin",
            "/docs/..;/admin",
            "/docs/./x",
            "/docs/..%2fadmin",
            "/docs/%2E%2E/admin",
            "/docs//x",
            "/docs/x\\..\\admin",
            "/docs/%5c",
            "docs/x",
            "",
        ] {
            assert_eq!(select(&m, tricky), None, "{tricky:?}");
        }
    }
}
