//! Image references of the form `<registry>/<repository>:<tag>`, as in a WasmPlugin's
//! `oci://` URL without the scheme.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Where an image is pushed: `127.0.0.1:5000/meshward/jwt-auth:0.1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Host and optional port, such as `127.0.0.1:5000` or `ghcr.io`.
    pub registry: String,
    /// Slash-separated lowercase path, such as `meshward/jwt-auth`.
    pub repository: String,
    /// The tag, such as `0.1.0`.
    pub tag: String,
}

impl Reference {
    /// Whether the registry is on this machine, where plain HTTP is the norm.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => self.registry.split(':').next().unwrap_or_default(),
        };
        host == "localhost" || host == "::1" || host.starts_with("127.")
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(text: &str) -> Result<Reference, Error> {
        let fail = |reason: &str| Error::Reference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text.strip_prefix("oci://").unwrap_or(text);
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(fail(
                "expected <registry>/<repository>:<tag>, such as 127.0.0.1:5000/meshward/jwt-auth:0.1.0",
            ));
        };
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(fail(
                "the part before the first / must be a registry host (with a dot or a port, or localhost)",
            ));
        }
        if path.contains('@') {
            return Err(fail("push needs a tag, not a digest"));
        }
        let Some((repository, tag)) = path.rsplit_once(':').filter(|(_, tag)| !tag.contains('/'))
        else {
            return Err(fail("expected a tag after the repository, such as :0.1.0"));
        };
        if !repository.split('/').all(valid_path_component) {
            return Err(fail(
                "repository path components must be lowercase letters and digits, separated by . _ or -",
            ));
        }
        if !valid_tag(tag) {
            return Err(fail(
                "a tag is 1 to 128 letters, digits, _ . or -, not starting with . or -",
            ));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut previous_was_separator = true;
    for c in component.chars() {
        if alnum(c) {
            previous_was_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_loopback_reference_into_registry_repository_and_tag() {
        let reference: Reference = "oci://127.0.0.1:5000/meshward/jwt-auth:0.1.0"
            .parse()
            .unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "meshward/jwt-auth");
        assert_eq!(reference.tag, "0.1.0");
        assert!(reference.is_loopback());
        assert_eq!(
            reference.to_string(),
            "127.0.0.1:5000/meshward/jwt-auth:0.1.0"
        );
    }

    #[test]
    fn a_remote_registry_is_not_loopback() {
        let reference: Reference = "ghcr.io/acme/jwt-auth:1".parse().unwrap();
        assert!(!reference.is_loopback());
    }

    #[test]
    fn refuses_a_reference_without_a_tag_or_registry_or_with_upper_case() {
        for bad in [
            "127.0.0.1:5000/meshward/jwt-auth",
            "meshward/jwt-auth:0.1.0",
            "127.0.0.1:5000/Meshward/jwt-auth:0.1.0",
            "127.0.0.1:5000/meshward/jwt-auth:-x",
            "127.0.0.1:5000/meshward/jwt-auth@sha256:00",
        ] {
            let error = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("reference {bad:?}: ")),
                "{error}"
            );
        }
    }
}
