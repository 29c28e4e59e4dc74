//! The label values metrics carry, and the cap that bounds how many there are.
//!
//! A cluster or route name becomes a label value when it is on the allow-list, or while
//! fewer than `max` other names have been admitted; every later name shows as `other`.
//! The admitted names live in shared data, so every worker admits the same ones and the
//! bound holds for the whole proxy, not per worker.

use meshward_shared::shared_data::Decision;

/// The label of names over the cap.
pub const OTHER: &str = "other";
/// The label of a request with no cluster or no route name (Envoy's own replies, unnamed
/// routes).
pub const NONE: &str = "none";
/// Label values are cut to this many bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// Turns a name into a label value that survives inside a stat name: bytes other than
/// ASCII letters, digits and `_ - . | :` become `_` (so `=` and `;`, which delimit tags,
/// never appear), and long names are cut to [`MAX_LABEL_LEN`]. An empty name is
/// [`NONE`].
pub fn sanitize(name: &str) -> String {
    if name.is_empty() {
        return NONE.to_string();
    }
    name.bytes()
        .take(MAX_LABEL_LEN)
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'|' | b':' => {
                char::from(b)
            }
            _ => '_',
        })
        .collect()
}

/// Which names of one kind (clusters or routes) get their own label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Names that always get their own label.
    pub allow: Vec<String>,
    /// How many other names get their own label, first seen first served.
    pub max: u32,
}

/// What the policy says about a name, before shared data is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It has its own label.
    Own(String),
    /// It is labelled [`OTHER`].
    Other,
    /// It gets its own label if the shared list admits it.
    AskRegistry,
}

impl Policy {
    /// Decides what can be decided without shared data.
    pub fn admission(&self, name: &str) -> Admission {
        if name.is_empty() {
            Admission::Own(NONE.to_string())
        } else if self.allow.iter().any(|a| a == name) {
            Admission::Own(sanitize(name))
        } else if self.max == 0 {
            Admission::Other
        } else {
            Admission::AskRegistry
        }
    }
}

/// Admits `name` to the shared list held in `current` (names, one a line) if it is there
/// already or the list has room for `max` names. Returns whether it is admitted, and the
/// list to write when it was added.
pub fn admit(current: Option<&[u8]>, name: &str, max: u32) -> Decision<bool> {
    let current = current.unwrap_or_default();
    let mut count = 0u32;
    for line in current.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line == name.as_bytes() {
            return Decision::Keep(true);
        }
        count += 1;
    }
    if count >= max || name.contains('\n') {
        return Decision::Keep(false);
    }
    let mut list = Vec::with_capacity(current.len() + name.len() + 1);
    list.extend_from_slice(current);
    list.extend_from_slice(name.as_bytes());
    list.push(b'\n');
    Decision::Write(list, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_what_a_stat_name_can_hold() {
        assert_eq!(
            sanitize("outbound|8080||reviews.default.svc.cluster.local"),
            "outbound|8080||reviews.default.svc.cluster.local"
        );
        assert_eq!(sanitize("api:443"), "api:443");
        assert_eq!(sanitize("a=b;.;c d/é"), "a_b_._c_d___");
        assert_eq!(sanitize(""), NONE);
        assert_eq!(sanitize(&"x".repeat(500)).len(), MAX_LABEL_LEN);
    }

    #[test]
    fn allowed_names_have_their_own_label_and_others_ask_the_registry() {
        let policy = Policy {
            allow: vec!["payments".into()],
            max: 2,
        };
        assert_eq!(
            policy.admission("payments"),
            Admission::Own("payments".into())
        );
        assert_eq!(policy.admission(""), Admission::Own("none".into()));
        assert_eq!(policy.admission("search"), Admission::AskRegistry);
        let allow_only = Policy { max: 0, ..policy };
        assert_eq!(allow_only.admission("search"), Admission::Other);
    }

    #[test]
    fn the_registry_admits_the_first_names_up_to_its_cap() {
        let mut list: Option<Vec<u8>> = None;
        let mut run = |name: &str| match admit(list.as_deref(), name, 2) {
            Decision::Write(bytes, admitted) => {
                list = Some(bytes);
                admitted
            }
            Decision::Keep(admitted) => admitted,
        };
        assert!(run("a"));
        assert!(run("b"));
        assert!(!run("c"));
        assert!(run("a"), "a name already admitted stays admitted");
        assert!(!run("bad\nname"));
    }
}
