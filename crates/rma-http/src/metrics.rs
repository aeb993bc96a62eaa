//! The Prometheus recorder every role installs when it starts, the buckets of its histograms,
//! and the HELP text of every series rma exports (listed in `docs/metrics.md`).
//!
//! One recorder serves a process: in `rma up` router, coordinator and workers share it and
//! their series are told apart by their prefixes (`rma_router_…`, `rma_coordinator_…`,
//! `rma_worker_…`). Series that describe state (gauges) are set to their first value at start,
//! so a scrape before any traffic already lists them.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds: 0.5 ms to 2 minutes, about ×2.5 a step, enough resolution
/// for an echo through three hops and for a 40-page OCR alike.
pub const BUCKETS_S: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// An HTTP status as a metric label, without allocating for the common ones.
pub fn status_label(status: axum::http::StatusCode) -> metrics::SharedString {
    const COMMON: [&str; 20] = [
        "200", "201", "202", "204", "400", "401", "403", "404", "405", "408", "409", "413", "415",
        "422", "429", "500", "501", "502", "503", "504",
    ];
    let code = status.as_str();
    match COMMON.iter().find(|c| **c == code) {
        Some(c) => metrics::SharedString::const_str(c),
        None => metrics::SharedString::from(code.to_owned()),
    }
}

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        // Buckets are constants; setting them cannot fail, but never panic at start for it.
        let builder = match builder.set_buckets(&BUCKETS_S) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder was installed first (a host application's); then
        // our series go there and this handle renders empty, which is harmless.
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

/// Most distinct `worker` label values a coordinator exports; later workers are folded into
/// `worker="other"` so a large fleet cannot blow up the series count.
pub const MAX_WORKER_LABELS: usize = 200;

fn describe() {
    // Router.
    describe_counter!(
        "rma_router_service_requests_total",
        "Service requests answered by the router, by service and HTTP status."
    );
    describe_histogram!(
        "rma_router_service_request_seconds",
        Unit::Seconds,
        "Time from a service request reaching the router to its answer, by service."
    );
    describe_histogram!(
        "rma_router_selection_seconds",
        Unit::Seconds,
        "Time the router spends choosing coordinators for a request."
    );
    describe_histogram!(
        "rma_router_registry_write_seconds",
        Unit::Seconds,
        "Time of a write to the router's registry file, by operation."
    );
    describe_gauge!(
        "rma_router_coordinators",
        "Coordinators the router knows, by status (healthy, unreachable, stale)."
    );
    describe_counter!(
        "rma_router_coordinator_failures_total",
        "Forwards to a coordinator that failed (no connection, 502, 503, timeout)."
    );
    describe_counter!(
        "rma_router_rate_limited_total",
        "Requests refused with 429 by the per-address or per-client limits."
    );
    // Coordinator.
    describe_gauge!(
        "rma_coordinator_workers",
        "Workers registered at the coordinator, by state (registered, active, stale, quarantined)."
    );
    describe_histogram!(
        "rma_coordinator_routing_seconds",
        Unit::Seconds,
        "Time the coordinator spends choosing a worker for a call."
    );
    describe_counter!(
        "rma_coordinator_service_requests_total",
        "Service requests answered by the coordinator, by service and HTTP status."
    );
    describe_histogram!(
        "rma_coordinator_service_request_seconds",
        Unit::Seconds,
        "Time from a service request reaching the coordinator to its answer, by service."
    );
    describe_gauge!(
        "rma_coordinator_jobs_queued",
        "Async jobs accepted and not started yet (the job queue's depth)."
    );
    describe_gauge!("rma_coordinator_jobs_running", "Async jobs running now.");
    describe_histogram!(
        "rma_coordinator_job_schedule_to_start_seconds",
        Unit::Seconds,
        "Time from a job being accepted to its first step starting."
    );
    describe_histogram!(
        "rma_coordinator_worker_service_seconds",
        Unit::Seconds,
        "Service execution time reported by each worker over its link, by worker and service."
    );
    describe_gauge!(
        "rma_coordinator_worker_queue_depth",
        "Calls in flight at each worker as the coordinator counts them, by worker."
    );
    describe_counter!(
        "rma_coordinator_worker_heartbeats_total",
        "Heartbeats received from each worker, by worker."
    );
    describe_gauge!(
        "rma_coordinator_worker_heartbeats_failed",
        "Heartbeats each worker reported failing to deliver since it started, by worker."
    );
    // Worker (its own --metrics-listen).
    describe_histogram!(
        "rma_worker_service_seconds",
        Unit::Seconds,
        "Time this worker spent executing a call, by service."
    );
    describe_gauge!(
        "rma_worker_queue_depth",
        "Calls running on this worker now."
    );
    describe_counter!(
        "rma_worker_heartbeats_total",
        "Heartbeats this worker sent, by result (ok, failed)."
    );
}

/// Folds worker ids into a bounded set of label values: the first [`MAX_WORKER_LABELS`]
/// distinct ids keep their own, the rest are `other`.
#[derive(Debug, Default)]
pub struct WorkerLabels {
    known: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl WorkerLabels {
    /// The label value for `worker`.
    pub fn label(&self, worker: &str) -> String {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(worker) {
            return worker.to_owned();
        }
        if known.len() < MAX_WORKER_LABELS {
            known.insert(worker.to_owned());
            worker.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_label_is_its_code() {
        for code in [200u16, 202, 404, 418, 503, 599] {
            let status = axum::http::StatusCode::from_u16(code).expect("status");
            assert_eq!(&*status_label(status), code.to_string());
        }
    }

    #[test]
    fn histograms_are_histograms_and_gauges_show_before_traffic() {
        let h = install();
        metrics::gauge!("rma_test_gauge_at_start").set(0.0);
        metrics::histogram!("rma_test_seconds").record(0.003);
        let text = h.render();
        assert!(text.contains("rma_test_gauge_at_start 0"), "{text}");
        assert!(text.contains("# TYPE rma_test_seconds histogram"), "{text}");
        assert!(
            text.contains("rma_test_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rma_test_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn worker_labels_are_bounded() {
        let l = WorkerLabels::default();
        for i in 0..MAX_WORKER_LABELS {
            assert_eq!(l.label(&format!("w{i}")), format!("w{i}"));
        }
        assert_eq!(l.label("w0"), "w0");
        assert_eq!(l.label("late"), "other");
    }
}
