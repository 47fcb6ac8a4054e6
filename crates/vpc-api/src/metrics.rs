//! Prometheus metrics, served as text at `GET /metrics` when the server is
//! started with `--metrics` (`docs/metering.md`, "Metrics").
//!
//! The API records its own requests here; the binary feeds the rest
//! (reconcile passes, kernel objects, metered transfer, DNS queries) through
//! the public fields, since only it sees those parts together.

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One counter series: the metric's name and its label values.
type SeriesKey = (String, Vec<String>);

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
    /// `vpcd_host_live{host}`: on an API server of a cluster, each
    /// registered host as this server sees it: 1 live, 0 not (a removed
    /// host has no series).
    pub host_live: IntGaugeVec,
    /// `vpcd_data_transfer_bytes_total{kind, resource, vpc, account}`, from the meter.
    pub transfer_bytes: IntCounterVec,
    /// `vpcd_data_transfer_packets_total{kind, resource, vpc, account}`.
    pub transfer_packets: IntCounterVec,
    /// `vpcd_dns_queries_total{rcode}`.
    pub dns_queries: IntCounterVec,
    /// `vpcd_backbone_tunnel_bytes_total{region, peer, direction}`: inner
    /// bytes one end of a region pair's tunnel sent or received.
    pub tunnel_bytes: IntCounterVec,
    /// `vpcd_backbone_tunnel_packets_total{region, peer, direction}`.
    pub tunnel_packets: IntCounterVec,
    /// `vpcd_backbone_tunnel_dropped_total{region, peer, reason}`.
    pub tunnel_dropped: IntCounterVec,
    /// `vpcd_backbone_tunnel_handshake_age_seconds{region, peer}`: absent
    /// until the first handshake.
    pub tunnel_handshake_age: GaugeVec,
    /// `vpcd_backbone_underlay_dropped_packets_total{region, direction}`:
    /// non-WireGuard underlay packets a region gateway's nft table dropped.
    pub underlay_dropped: IntCounterVec,
    /// The last cumulative value fed to each counter through
    /// [`Metrics::set_total`], so a source that restarts from zero is seen.
    totals: Arc<Mutex<HashMap<SeriesKey, u64>>>,
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
        let tunnel_bytes = counter(
            "vpcd_backbone_tunnel_bytes_total",
            "Inner bytes one end of an inter-region tunnel sent to (direction=sent) or received from (received) the peer region.",
            &["region", "peer", "direction"],
        );
        let tunnel_packets = counter(
            "vpcd_backbone_tunnel_packets_total",
            "Inner packets one end of an inter-region tunnel sent or received.",
            &["region", "peer", "direction"],
        );
        let tunnel_dropped = counter(
            "vpcd_backbone_tunnel_dropped_total",
            "Datagrams or packets one end of an inter-region tunnel dropped, by reason (invalid_wireguard, unknown_peering, send_failed).",
            &["region", "peer", "reason"],
        );
        let underlay_dropped = counter(
            "vpcd_backbone_underlay_dropped_packets_total",
            "Non-WireGuard packets a region gateway's nft table dropped on the underlay, by direction (in, out).",
            &["region", "direction"],
        );
        let tunnel_handshake_age = must(GaugeVec::new(
            Opts::new(
                "vpcd_backbone_tunnel_handshake_age_seconds",
                "Seconds since one end of an inter-region tunnel last completed a handshake (absent: none yet).",
            ),
            &["region", "peer"],
        ));
        must(registry.register(Box::new(tunnel_handshake_age.clone())));
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
        let host_live = must(IntGaugeVec::new(
            Opts::new(
                "vpcd_host_live",
                "Registered hosts as this API server sees them: 1 when the host's agent holds its liveness lease.",
            ),
            &["host"],
        ));
        must(registry.register(Box::new(host_live.clone())));
        Metrics {
            registry,
            api_requests,
            api_latency,
            reconcile_passes,
            reconcile_duration,
            kernel_objects,
            host_live,
            transfer_bytes,
            transfer_packets,
            dns_queries,
            tunnel_bytes,
            tunnel_packets,
            tunnel_dropped,
            tunnel_handshake_age,
            underlay_dropped,
            totals: Arc::default(),
        }
    }

    /// Brings a counter to a source's cumulative `total` (a kernel or
    /// tunnel counter read again and again): it moves by the growth since
    /// the last call, or by all of `total` when the source restarted from
    /// zero (Prometheus sees a counter that only grows).
    pub fn set_total(&self, counter: &IntCounterVec, labels: &[&str], total: u64) {
        self.set_source_total(counter, labels, "", total);
    }

    /// As [`set_total`](Self::set_total), for one of several sources that
    /// add to the same labels (each followed on its own, by `source`: one
    /// restarting from zero adds only its own count again).
    pub fn set_source_total(
        &self,
        counter: &IntCounterVec,
        labels: &[&str],
        source: &str,
        total: u64,
    ) {
        let name = counter
            .desc()
            .first()
            .map(|d| d.fq_name.clone())
            .unwrap_or_default();
        let key = (
            name,
            labels
                .iter()
                .map(|l| l.to_string())
                .chain((!source.is_empty()).then(|| format!("source={source}")))
                .collect(),
        );
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let last = totals.insert(key, total);
        let grown = match last {
            Some(last) if total >= last => total - last,
            _ => total,
        };
        counter.with_label_values(labels).inc_by(grown);
    }

    /// Shows the registered hosts and their liveness (`vpcd_host_live`).
    pub fn set_hosts(&self, hosts: &vpc_model::placement::HostDirectory) {
        self.host_live.reset();
        for name in hosts.hosts.keys() {
            self.host_live
                .with_label_values(&[name])
                .set(i64::from(hosts.is_live(name)));
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

/// Serves `metrics` alone at `GET /metrics` on `listener` (a `vpcd agent`'s
/// `--metrics-listen`: a host's reconciler, meter and DNS figures, no API);
/// every other path is 404. Runs until the process ends.
pub async fn serve_alone(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app).await
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

    #[test]
    fn set_total_follows_a_source_through_its_restart() {
        let m = Metrics::new();
        let labels = ["us-east-1", "us-west-2", "sent"];
        let c = m.tunnel_bytes.clone();
        m.set_total(&c, &labels, 100);
        m.set_total(&c, &labels, 250);
        assert_eq!(c.with_label_values(&labels).get(), 250);
        // The source restarted from zero: its new 40 bytes count too.
        m.set_total(&c, &labels, 40);
        assert_eq!(c.with_label_values(&labels).get(), 290);
        // Another label set is separate.
        m.set_total(&c, &["us-west-2", "us-east-1", "sent"], 7);
        assert_eq!(c.with_label_values(&labels).get(), 290);
        assert!(m
            .render()
            .contains("vpcd_backbone_tunnel_bytes_total{direction=\"sent\",peer=\"us-east-1\",region=\"us-west-2\"} 7"));
    }
}
