//! The limits file: a YAML (or JSON) list of limits in limitador's own format, so a file
//! written for limitador-server works here too:
//!
//! ```yaml
//! - namespace: meshward            # the request's domain
//!   name: per_user                 # optional, shown in DescriptorStatus.current_limit.name
//!   max_value: 5                   # hits allowed per window
//!   seconds: 60                    # the window
//!   conditions: ["descriptors[0].rule == 'per_user'"]   # CEL predicates, all must hold
//!   variables: ["descriptors[0]['x-user']"]             # CEL expressions: one count per value
//! ```

use std::path::Path;

use limitador::limit::{Expression, Limit, Predicate};
use serde::Deserialize;

/// One limit as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSpec {
    namespace: String,
    #[serde(default)]
    name: Option<String>,
    max_value: u64,
    seconds: u64,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    variables: Vec<String>,
}

/// Reads and checks the limits file at `path`.
pub fn load(path: &Path) -> Result<Vec<Limit>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the limits file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("limits file {}: {e}", path.display()))
}

/// Parses a limits file's text; an error names the limit and field at fault.
pub fn parse(text: &str) -> Result<Vec<Limit>, String> {
    let specs: Vec<LimitSpec> = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut limits = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        if spec.namespace.is_empty() {
            return Err(format!("[{i}].namespace: must not be empty"));
        }
        if spec.seconds == 0 {
            return Err(format!("[{i}].seconds: must be at least 1"));
        }
        let mut conditions = Vec::with_capacity(spec.conditions.len());
        for (j, source) in spec.conditions.iter().enumerate() {
            let predicate = Predicate::parse(source)
                .map_err(|e| format!("[{i}].conditions[{j}] {source:?}: {e}"))?;
            conditions.push(predicate);
        }
        let mut variables = Vec::with_capacity(spec.variables.len());
        for (j, source) in spec.variables.iter().enumerate() {
            let expression = Expression::parse(source)
                .map_err(|e| format!("[{i}].variables[{j}] {source:?}: {e}"))?;
            variables.push(expression);
        }
        let mut limit = Limit::new(
            spec.namespace.as_str(),
            spec.max_value,
            spec.seconds,
            conditions,
            variables,
        );
        if let Some(name) = spec.name {
            limit.set_name(name);
        }
        limits.push(limit);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_in_limitadors_format_loads_with_its_name_and_window() {
        let limits = parse(
            "- namespace: meshward\n  name: per_user\n  max_value: 5\n  seconds: 60\n  \
             conditions: [\"descriptors[0].rule == 'per_user'\"]\n  \
             variables: [\"descriptors[0]['x-user']\"]\n",
        )
        .unwrap();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].namespace().as_ref(), "meshward");
        assert_eq!(limits[0].name(), Some("per_user"));
        assert_eq!(limits[0].max_value(), 5);
        assert_eq!(limits[0].seconds(), 60);
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let error = parse("- namespace: m\n  max_value: 1\n  seconds: 1\n  secs: 2\n").unwrap_err();
        assert!(error.contains("secs"), "{error}");
    }

    #[test]
    fn a_bad_condition_is_refused_naming_it() {
        let error =
            parse("- namespace: m\n  max_value: 1\n  seconds: 1\n  conditions: [\"a ==\"]\n")
                .unwrap_err();
        assert!(error.starts_with("[0].conditions[0]"), "{error}");
    }

    #[test]
    fn a_zero_window_is_refused() {
        let error = parse("- namespace: m\n  max_value: 1\n  seconds: 0\n").unwrap_err();
        assert!(error.starts_with("[0].seconds"), "{error}");
    }
}
