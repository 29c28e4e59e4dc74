//! Response headers that reveal the software, versions, hosts or internal routing behind the
//! proxy, removed by default. The list starts from the OWASP Secure Headers Project's
//! `headers_remove.json` and adds common leaks it lacks: `x-backend-server` (names the
//! backend host), `x-drupal-cache` and `x-drupal-dynamic-cache` (reveal the CMS),
//! `x-pingback` (WordPress's XML-RPC endpoint) and `x-runtime` (Rails and Rack timing).

/// The default removal list: lowercase, sorted, no duplicates (a unit test checks this).
pub const DEFAULT_LEAK_HEADERS: &[&str] = &[
    "$wsep",
    "host-header",
    "k-proxy-request",
    "liferay-portal",
    "oraclecommercecloud-version",
    "pega-host",
    "powered-by",
    "product",
    "server",
    "sourcemap",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-atmosphere-error",
    "x-atmosphere-first-request",
    "x-atmosphere-tracking-id",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-spanid",
    "x-b3-traceid",
    "x-backend-server",
    "x-beserver",
    "x-calculatedbetarget",
    "x-cf-powered-by",
    "x-cms",
    "x-cocoon-version",
    "x-content-encoded-by",
    "x-diaginfo",
    "x-drupal-cache",
    "x-drupal-dynamic-cache",
    "x-dtagentid",
    "x-dthealthcheck",
    "x-dtinjectedservlet",
    "x-envoy-attempt-count",
    "x-envoy-external-address",
    "x-envoy-internal",
    "x-envoy-original-dst-host",
    "x-envoy-upstream-service-time",
    "x-feserver",
    "x-framework",
    "x-generated-by",
    "x-generator",
    "x-jitsi-release",
    "x-kubernetes-pf-flowschema-ui",
    "x-kubernetes-pf-prioritylevel-uid",
    "x-litespeed-cache",
    "x-litespeed-cache-control",
    "x-litespeed-purge",
    "x-litespeed-tag",
    "x-litespeed-vary",
    "x-mod-pagespeed",
    "x-nextjs-cache",
    "x-nextjs-matched-path",
    "x-nextjs-page",
    "x-nextjs-redirect",
    "x-old-content-length",
    "x-oneagent-js-injection",
    "x-owa-version",
    "x-page-speed",
    "x-php-version",
    "x-pingback",
    "x-powered-by",
    "x-powered-by-plesk",
    "x-powered-cms",
    "x-redirect-by",
    "x-runtime",
    "x-ruxit-js-agent",
    "x-server-powered-by",
    "x-sourcefiles",
    "x-sourcemap",
    "x-turbo-charged-by",
    "x-umbraco-version",
    "x-varnish-backend",
    "x-varnish-server",
];

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::config::check_header_name;

    #[test]
    fn the_default_list_is_sorted_lowercase_header_names() {
        for name in DEFAULT_LEAK_HEADERS {
            check_header_name("leaks", name).unwrap();
        }
        assert!(DEFAULT_LEAK_HEADERS.windows(2).all(|w| w[0] < w[1]));
        for required in [
            "server",
            "x-powered-by",
            "x-aspnet-version",
            "x-aspnetmvc-version",
            "x-envoy-upstream-service-time",
        ] {
            assert!(DEFAULT_LEAK_HEADERS.contains(&required), "{required}");
        }
    }
}
