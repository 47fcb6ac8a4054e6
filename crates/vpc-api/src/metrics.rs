//! Prometheus metrics, served as text at `GET /metrics` when the server is
//! started with `--metrics` (`docs/metering.md`, "Metrics").
//!
//! The API records its own requests here; the binary feeds the rest
//! (reconcile passes, kernel objects, metered transfer, DNS queries) through
//! the public fields, since only it sees those parts together.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric vpcd exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `vpcd_api_requests_total{action, outcome}`: outcome is `ok` or the AWS error code.
    pub api_requests: IntCounterVec,
    /// `vpcd_api_request_duration_seconds{action}`.
    pub api_latency: HistogramVec,
    /// `vpcd_reconcile_passes_total{result}`: `ok` or `error`.
    pub reconcile_passes: IntCounterVec,
    /// `vpcd_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `vpcd_kernel_objects{kind}`: namespaces, links, addresses, routes, rules, nft tables.
    pub kernel_objects: IntGaugeVec,
    /// `vpcd_data_transfer_bytes_total{kind, resource, vpc, account}`, from the meter.
    pub transfer_bytes: IntCounterVec,
    /// `vpcd_data_transfer_packets_total{kind, resource, vpc, account}`.
    pub transfer_packets: IntCounterVec,
    /// `vpcd_dns_queries_total{rcode}`.
    pub dns_queries: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails for malformed names or duplicate registration, both fixed here.
    r.expect("metric definitions are static and registered once")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let api_requests = counter(
            "vpcd_api_requests_total",
            "API requests answered, by action and outcome (ok or the error code).",
            &["action", "outcome"],
        );
        let reconcile_passes = counter(
            "vpcd_reconcile_passes_total",
            "Data-plane reconcile passes, by result.",
            &["result"],
        );
        let transfer_labels = ["kind", "resource", "vpc", "account"];
        let transfer_bytes = counter(
            "vpcd_data_transfer_bytes_total",
            "Bytes metered in the kernel across peerings (peering-out, peering-in), internet gateways and NAT gateways.",
            &transfer_labels,
        );
        let transfer_packets = counter(
            "vpcd_data_transfer_packets_total",
            "Packets metered in the kernel (a GSO super-packet counts once).",
            &transfer_labels,
        );
        let dns_queries = counter(
            "vpcd_dns_queries_total",
            "Queries to the VPC DNS servers, by response code (dropped: not admitted).",
            &["rcode"],
        );
        let api_latency = must(HistogramVec::new(
            HistogramOpts::new(
                "vpcd_api_request_duration_seconds",
                "Time to answer an authenticated API request, by action.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["action"],
        ));
        must(registry.register(Box::new(api_latency.clone())));
        let reconcile_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                "vpcd_reconcile_duration_seconds",
                "Time one data-plane reconcile pass took.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        ));
        must(registry.register(Box::new(reconcile_duration.clone())));
        let kernel_objects = must(IntGaugeVec::new(
            Opts::new(
                "vpcd_kernel_objects",
                "Kernel objects the data plane maintains, by kind.",
            ),
            &["kind"],
        ));
        must(registry.register(Box::new(kernel_objects.clone())));
        Metrics {
            registry,
            api_requests,
            api_latency,
            reconcile_passes,
            reconcile_duration,
            kernel_objects,
            transfer_bytes,
            transfer_packets,
            dns_queries,
        }
    }

    /// Records one answered API request.
    pub fn api_request(&self, action: &str, outcome: &str, seconds: f64) {
        self.api_requests
            .with_label_values(&[action, outcome])
            .inc();
        self.api_latency
            .with_label_values(&[action])
            .observe(seconds);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_show_up_in_the_text_format() {
        let m = Metrics::new();
        m.api_request("CreateVpc", "ok", 0.003);
        m.api_request("CreateVpc", "InvalidParameterValue", 0.001);
        let text = m.render();
        assert!(text.contains("vpcd_api_requests_total{action=\"CreateVpc\",outcome=\"ok\"} 1"));
        assert!(text.contains("vpcd_api_request_duration_seconds_count{action=\"CreateVpc\"} 2"));
        assert!(text.contains("# TYPE vpcd_reconcile_duration_seconds histogram"));
    }
}
