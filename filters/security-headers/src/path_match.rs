//! Which per-path override a request path selects. Matching is on the path without its query,
//! and only on paths in normal form: a path with dot segments, doubled or encoded slashes, or
//! encoded dots could be resolved by the upstream to a different resource than its text says
//! (`/docs/..%2fadmin`), so it never selects an override and gets the top-level headers.
//! Overrides match as every meshward rule does ([`meshward_shared::matching`]).

use meshward_shared::matching::{self, RequestMatch, RequestView};

/// The index of the first override whose match selects the request, or `None` when none
/// does, or the request has no `:path`, or its path is not in normal form.
pub fn select<'a>(
    matchers: impl IntoIterator<Item = &'a RequestMatch>,
    request: &(impl RequestView + ?Sized),
) -> Option<usize> {
    let target = request.header(":path")?;
    let path = std::str::from_utf8(matching::path_of(&target)).ok()?;
    if !is_normal(path) {
        return None;
    }
    matchers.into_iter().position(|m| m.matches(request))
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

    fn matchers() -> Vec<RequestMatch> {
        [
            r#"{"path": {"exact": "/docs/legacy"}}"#,
            r#"{"path": {"prefix": "/docs/"}}"#,
            r#"{"methods": ["POST"]}"#,
        ]
        .iter()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
    }

    fn select(m: &[RequestMatch], target: &str) -> Option<usize> {
        let request = [
            (":path".to_string(), target.as_bytes().to_vec()),
            (":method".to_string(), b"GET".to_vec()),
        ];
        super::select(m, request.as_slice())
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
        let post = [
            (":path".to_string(), b"/app".to_vec()),
            (":method".to_string(), b"POST".to_vec()),
        ];
        assert_eq!(super::select(&m, post.as_slice()), Some(2));
        assert_eq!(super::select(&m, &post[1..]), None, "no :path, no override");
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
