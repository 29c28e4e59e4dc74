//! Envoy's stats tag extraction (`stats_config.stats_tags` with a `regex`), applied to the
//! metrics a filter defines, so a test can read a metric as `/stats/prometheus` shows it:
//! `meshward_rate_limit.rule=.=login;.;allowed` with the tag `rule` lifted out is
//! `meshward_rate_limit.allowed{rule="login"}`.
//!
//! The rules are those of Envoy's `TagExtractorStdRegexImpl`: each regex is searched in the
//! stat's full name (`wasmcustom.<name>`), in the order configured; its first capture group
//! is the part removed from the name, and the tag's value is its second group when it has
//! one, else the first. Every regex sees the full name, and the parts they remove are
//! removed together. Envoy's own default extractors match only Envoy's stat names, never a
//! `wasmcustom.` one, so they are left out. `tests/tests/differential.rs` checks the
//! result against Envoy's `/stats/prometheus`.

use regex::Regex;

use crate::error::HarnessError;

/// One `stats_tags` entry.
#[derive(Clone, Debug)]
pub(crate) struct TagRule {
    name: String,
    regex: Regex,
}

impl TagRule {
    /// A rule, or why Envoy would refuse it too (a regex that does not compile, or without
    /// a capture group).
    pub(crate) fn new(name: &str, pattern: &str) -> Result<Self, HarnessError> {
        let refuse = |why: String| HarnessError::Unsupported {
            message: format!("stats tag {name:?}: {why}"),
        };
        let regex = Regex::new(pattern).map_err(|e| refuse(format!("bad regex: {e}")))?;
        if regex.captures_len() < 2 {
            return Err(refuse("the regex needs a capture group".into()));
        }
        Ok(Self {
            name: name.to_string(),
            regex,
        })
    }
}

/// The tag-extracted name of the stat `full` and its tags, in the order of `rules`.
pub(crate) fn extract(rules: &[TagRule], full: &str) -> (String, Vec<(String, String)>) {
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut tags = Vec::new();
    for rule in rules {
        let Some(captures) = rule.regex.captures(full) else {
            continue;
        };
        let Some(remove) = captures.get(1) else {
            continue;
        };
        let value = if rule.regex.captures_len() > 2 {
            captures.get(2).map_or("", |m| m.as_str())
        } else {
            remove.as_str()
        };
        removed.push((remove.start(), remove.end()));
        tags.push((rule.name.clone(), value.to_string()));
    }
    let name: String = full
        .char_indices()
        .filter(|(at, _)| {
            !removed
                .iter()
                .any(|(start, end)| (*start..*end).contains(at))
        })
        .map(|(_, c)| c)
        .collect();
    (name, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, &str)]) -> Vec<TagRule> {
        list.iter()
            .map(|(n, r)| TagRule::new(n, r).unwrap())
            .collect()
    }

    #[test]
    fn the_first_group_is_removed_and_the_second_is_the_value() {
        let rules = rules(&[(
            "rule",
            r"^wasmcustom\.meshward_rate_limit\.rule\.(([a-z0-9_]+)\.)[a-z_]+$",
        )]);
        assert_eq!(
            extract(&rules, "wasmcustom.meshward_rate_limit.rule.login.allowed"),
            (
                "wasmcustom.meshward_rate_limit.rule.allowed".to_string(),
                vec![("rule".to_string(), "login".to_string())]
            )
        );
        // No match: the name as it is, no tag.
        assert_eq!(
            extract(&rules, "wasmcustom.other.allowed"),
            ("wasmcustom.other.allowed".to_string(), Vec::new())
        );
    }

    #[test]
    fn every_rule_sees_the_full_name_and_their_removals_add_up() {
        let rules = rules(&[
            ("region", r"^wasmcustom\.rr\.region\.(([a-z0-9_-]+)\.)"),
            (
                "reason",
                r"^wasmcustom\.rr\.region\.[a-z0-9_-]+\.(reason\.([a-z_]+)\.)decisions$",
            ),
        ]);
        assert_eq!(
            extract(
                &rules,
                "wasmcustom.rr.region.eu-west-1.reason.latency.decisions"
            ),
            (
                "wasmcustom.rr.region.decisions".to_string(),
                vec![
                    ("region".to_string(), "eu-west-1".to_string()),
                    ("reason".to_string(), "latency".to_string()),
                ]
            )
        );
    }

    #[test]
    fn a_rule_without_a_group_or_with_a_bad_regex_is_refused() {
        assert!(TagRule::new("t", "^abc$").is_err());
        assert!(TagRule::new("t", "(").is_err());
    }
}
