//! Metrics defined once at configure time and used by handle on the request path.
//!
//! Every meshward metric is declared with [`metrics!`](crate::metrics!) and named one way:
//! `meshward_<filter>.<stat>`, with its labels written into the name as
//! `meshward_<filter>.<label>=.=<value>;.;<stat>` ([`tagged_name`]). That is the form
//! Istio's `extraStatTags` (and the `stats_tags` regex `(<label>=\.=(.*?);\.;)`) lift into
//! labels, so `/stats/prometheus` shows `meshward_<filter>_<stat>{<label>="<value>"}`.
//! Envoy keeps custom metrics under `wasmcustom.` in `/stats`, and `/stats/prometheus`
//! prints them without that prefix. A handle whose definition failed (for example outside
//! a proxy) does nothing, so a metric never breaks a request.

use crate::host::{self, MetricKind};

/// One metric of a group declared with [`metrics!`](crate::metrics!): its name after the
/// filter's prefix, its kind and what it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The name after `meshward_<filter>.`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// What it counts (the field's documentation).
    pub doc: &'static str,
}

/// Declares a group of metrics in one place: each is a field (its handle) named by the
/// field, documented once, under the filter's prefix. It makes the struct, `PREFIX`,
/// `STATS` (every metric, in order), `define(labels)`, which defines them all with the
/// given label values, and `declare(label_names)` for a group whose members are defined
/// later (see [`declare_family`]):
///
/// ```
/// meshward_shared::metrics! {
///     /// The filter's metrics, defined once at configure time and copied into each stream.
///     pub struct Metrics {
///         prefix: "meshward_hello",
///         /// Responses the filter tagged.
///         responses_tagged: Counter,
///         /// Requests in flight.
///         in_flight: Gauge,
///     }
/// }
/// let names: Vec<_> = Metrics::STATS.iter().map(|s| s.name).collect();
/// assert_eq!(names, ["responses_tagged", "in_flight"]);
/// assert_eq!(Metrics::name(&[], "in_flight"), "meshward_hello.in_flight");
/// assert_eq!(
///     Metrics::name(&[("route", "r1")], "in_flight"),
///     "meshward_hello.route=.=r1;.;in_flight"
/// );
/// let metrics = Metrics::define(&[]); // outside a proxy the handles do nothing
/// metrics.responses_tagged.inc();
/// ```
#[macro_export]
macro_rules! metrics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            prefix: $prefix:literal,
            $($(#[doc = $doc:literal])+ $field:ident: $kind:ident),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name {
            $($(#[doc = $doc])+ pub $field: $crate::metrics::$kind,)+
        }

        impl $name {
            /// The filter's prefix: `meshward_<filter>`.
            pub const PREFIX: &'static str = $prefix;

            /// Every metric of the group, in the order declared.
            pub const STATS: &'static [$crate::metrics::Stat] = &[$($crate::metrics::Stat {
                name: stringify!($field),
                kind: $crate::metrics::$kind::KIND,
                doc: concat!($($doc),+),
            }),+];

            /// The full name of `stat` with `labels` (name, value), in order.
            pub fn name(labels: &[(&str, &str)], stat: &str) -> String {
                $crate::metrics::tagged_name($prefix, labels, stat)
            }

            /// Declares every metric as a family labelled by `label_names`, for members
            /// defined after configuration (see `metrics::declare_family`).
            pub fn declare(label_names: &[&str]) {
                if !label_names.is_empty() {
                    $($crate::metrics::declare_family(
                        $crate::metrics::$kind::KIND,
                        $prefix,
                        label_names,
                        stringify!($field),
                    );)+
                }
            }

            /// Defines (or finds) every metric with `labels` (name, value), in order.
            pub fn define(labels: &[(&str, &str)]) -> Self {
                $($crate::metrics::declare_family_of(
                    $crate::metrics::$kind::KIND,
                    $prefix,
                    labels,
                    stringify!($field),
                );)+
                $name {
                    $($field: $crate::metrics::$kind::define(&Self::name(labels, stringify!($field))),)+
                }
            }
        }
    };
}

/// A counter: only goes up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter(Option<u32>);

/// A gauge: goes up and down, or is set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauge(Option<u32>);

/// A histogram: records samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Histogram(Option<u32>);

impl Counter {
    /// Its kind, for [`declare_family`].
    pub const KIND: MetricKind = MetricKind::Counter;
    /// Defines (or finds) the counter `name`.
    pub fn define(name: &str) -> Self {
        Counter(host::define_metric(MetricKind::Counter, name).ok())
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n` (a zero is skipped: Envoy refuses it).
    pub fn add(&self, n: u64) {
        if let (Some(id), Ok(n @ 1..)) = (self.0, i64::try_from(n)) {
            // A metric that cannot be updated must not fail the request; nothing to do.
            let _ = host::increment_metric(id, n);
        }
    }
}

impl Gauge {
    /// Its kind, for [`declare_family`].
    pub const KIND: MetricKind = MetricKind::Gauge;
    /// Defines (or finds) the gauge `name`.
    pub fn define(name: &str) -> Self {
        Gauge(host::define_metric(MetricKind::Gauge, name).ok())
    }
    /// Sets the gauge.
    pub fn set(&self, value: u64) {
        if let Some(id) = self.0 {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::record_metric(id, value);
        }
    }
    /// Adds `delta` (negative to go down).
    pub fn add(&self, delta: i64) {
        if let (Some(id), true) = (self.0, delta != 0) {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::increment_metric(id, delta);
        }
    }
}

impl Histogram {
    /// Its kind, for [`declare_family`].
    pub const KIND: MetricKind = MetricKind::Histogram;
    /// Defines (or finds) the histogram `name`.
    pub fn define(name: &str) -> Self {
        Histogram(host::define_metric(MetricKind::Histogram, name).ok())
    }
    /// Records one sample.
    pub fn record(&self, value: u64) {
        if let Some(id) = self.0 {
            // See `Counter::add`: metrics never fail a request.
            let _ = host::record_metric(id, value);
        }
    }
}

/// The metrics of `stats` that `readme` does not name as `` `<prefix>_<stat>` `` (the name
/// `/stats/prometheus` shows), for each filter's test that its README lists every metric.
pub fn unlisted(readme: &str, prefix: &str, stats: &[Stat]) -> Vec<String> {
    stats
        .iter()
        .map(|stat| format!("{prefix}_{}", stat.name))
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect()
}

/// The most labels a family may have.
pub const MAX_LABELS: usize = 8;

/// The name of metric `stat` under `prefix` with labels `tags`, in the form Istio's
/// `extraStatTags` (and a `stats_tags` regex) lift into labels:
/// `prefix.tag=.=value;.;tag=.=value;.;stat` (`prefix.stat` without labels).
pub fn tagged_name(prefix: &str, tags: &[(&str, &str)], stat: &str) -> String {
    let length = prefix.len()
        + 1
        + tags
            .iter()
            .map(|(tag, value)| tag.len() + value.len() + 6)
            .sum::<usize>()
        + stat.len();
    let mut out = String::with_capacity(length);
    out.push_str(prefix);
    out.push('.');
    for (tag, value) in tags {
        out.push_str(tag);
        out.push_str("=.=");
        out.push_str(value);
        out.push_str(";.;");
    }
    out.push_str(stat);
    out
}

/// A [`tagged_name`] taken apart: the family's name (`prefix.stat`), its label names and
/// the label values, in order. `None` for a name without labels or with more than
/// [`MAX_LABELS`].
pub fn parse_tagged(name: &str) -> Option<(String, Vec<&str>, Vec<&str>)> {
    let (prefix, mut rest) = name.split_once('.')?;
    let (mut labels, mut values) = (Vec::new(), Vec::new());
    while let Some((tag, after)) = rest.split_once("=.=") {
        let (value, after) = after.split_once(";.;")?;
        if tag.contains(['.', ';']) || value.contains("=.=") || labels.len() == MAX_LABELS {
            return None;
        }
        labels.push(tag);
        values.push(value);
        rest = after;
    }
    (!labels.is_empty()).then(|| (format!("{prefix}.{rest}"), labels, values))
}

/// [`declare_family`] with the label names of `labels` (name, value), for a group defined
/// with its label values at configure time; nothing without labels. The Wasm build does
/// nothing here (and allocates nothing).
pub fn declare_family_of(kind: MetricKind, prefix: &str, labels: &[(&str, &str)], stat: &str) {
    #[cfg(feature = "native")]
    if !labels.is_empty() {
        let names: Vec<&str> = labels.iter().map(|(name, _)| *name).collect();
        declare_family(kind, prefix, &names, stat);
    }
    #[cfg(not(feature = "native"))]
    let _ = (kind, prefix, labels, stat);
}

/// Declares, at configure time, the family of labelled metrics `prefix.stat` with label
/// names `labels`, whose members the filter defines later by their [`tagged_name`].
///
/// Envoy's Wasm host defines a metric whenever asked, and there the `stats_tags` (or
/// Istio's `extraStatTags`) turn the tags in the name into labels, so this does nothing.
/// An Envoy dynamic module must define every metric while its configuration loads (Envoy
/// refuses later definitions); the native backend defines the family then, and a tagged
/// name defined later becomes the family's metric with those label values.
pub fn declare_family(kind: MetricKind, prefix: &str, labels: &[&str], stat: &str) {
    #[cfg(feature = "native")]
    crate::native::declare_family(kind as u32, &format!("{prefix}.{stat}"), labels);
    #[cfg(not(feature = "native"))]
    let _ = (kind, prefix, labels, stat);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_name_parses_back_into_its_family_labels_and_values() {
        let name = tagged_name("p", &[("cluster", "a_b"), ("route", "r")], "retries");
        assert_eq!(name, "p.cluster=.=a_b;.;route=.=r;.;retries");
        assert_eq!(
            parse_tagged(&name),
            Some((
                "p.retries".to_owned(),
                vec!["cluster", "route"],
                vec!["a_b", "r"]
            ))
        );
        assert_eq!(parse_tagged("p.retries"), None, "no labels");
        assert_eq!(
            parse_tagged("p.cluster=.=a;retries"),
            None,
            "an unterminated tag"
        );
        let nine: Vec<(&str, &str)> = (0..9).map(|_| ("t", "v")).collect();
        assert_eq!(
            parse_tagged(&tagged_name("p", &nine, "s")),
            None,
            "too many labels"
        );
        assert!(parse_tagged(&tagged_name("p", &nine[..8], "s")).is_some());
    }

    #[test]
    fn handles_defined_outside_a_proxy_do_nothing_and_do_not_panic() {
        let c = Counter::define("x");
        c.inc();
        c.add(u64::MAX);
        Gauge::define("g").add(-1);
        Histogram::define("h").record(5);
    }
}
