//! Envoy's `/stats/prometheus` text, parsed into samples a test can look up by name and
//! labels.
//!
//! Envoy prints its own stats with an `envoy_` prefix (`envoy.cluster.upstream_rq` becomes
//! `envoy_cluster_upstream_rq{envoy_cluster_name="upstream"}`). A filter's custom metrics
//! (`wasmcustom.<name>` in `/stats`) appear under their bare name, with the `wasmcustom`
//! namespace dropped: `security_headers_responses{} 3`.

use crate::RigError;

/// A sample's labels: name and value, in the order printed.
pub type Labels = Vec<(String, String)>;

/// One sample line: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `envoy_cluster_upstream_rq_total`.
    pub name: String,
    /// The labels in the order printed.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Every sample of one `/stats/prometheus` page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    samples: Vec<Sample>,
}

impl Stats {
    /// Parses the Prometheus text format; comment lines are skipped.
    pub fn parse(text: &str) -> Result<Self, RigError> {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                parse_sample(line).map_err(|message| RigError::Stats {
                    line: line.to_owned(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Stats { samples })
    }

    /// The value of the first sample named `name` that has every label in `labels`
    /// (it may have more).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && has_labels(s, labels))
            .map(|s| s.value)
    }

    /// Every sample, in the order Envoy printed them.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

fn has_labels(sample: &Sample, wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
}

/// Parses `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| format!("value {other:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses labels up to the closing brace; returns them and the text after the brace.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after_key) = text.split_once("=\"").ok_or("label without =\"")?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("label value ends in a backslash".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = after_key.get(end + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="upstream"} 7
envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="upstream"} 1
# TYPE security_headers_responses counter
security_headers_responses{} 3
envoy_server_uptime 12
odd{path="a\"b\\c"} 1.5
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="upstream",le="+Inf"} 2
"#;

    #[test]
    fn finds_a_sample_by_name_and_a_subset_of_its_labels() {
        let stats = Stats::parse(PAGE).unwrap();
        let code = |c| stats.get("envoy_cluster_upstream_rq", &[("envoy_response_code", c)]);
        assert_eq!(code("200"), Some(7.0));
        assert_eq!(code("503"), Some(1.0));
        assert_eq!(code("404"), None);
        assert_eq!(stats.get("security_headers_responses", &[]), Some(3.0));
        assert_eq!(stats.get("envoy_server_uptime", &[]), Some(12.0));
    }

    #[test]
    fn unescapes_label_values() {
        let stats = Stats::parse(PAGE).unwrap();
        assert_eq!(stats.get("odd", &[("path", "a\"b\\c")]), Some(1.5));
        let le = stats.get(
            "envoy_cluster_upstream_cx_connect_ms_bucket",
            &[("le", "+Inf")],
        );
        assert_eq!(le, Some(2.0));
    }

    #[test]
    fn refuses_a_line_without_a_value_naming_it() {
        let error = Stats::parse("lonely{a=\"b\"}").unwrap_err().to_string();
        assert!(error.contains("lonely"), "{error}");
    }
}
