//! The capability model: what a machine detected, and the pure assignment of services from it.
//!
//! A machine has every capability it detects (a gaming PC with a big disk is both `gpu` and
//! `storage`); `cpu` is always present. `WORKER_TYPE` forces one capability instead of detection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::service;

/// Free bytes on the data directory above which a machine counts as `storage` (100 GB).
pub const STORAGE_MIN_FREE_BYTES: u64 = 100 * 1_000_000_000;

/// One NVIDIA GPU as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Marketing name, e.g. "NVIDIA GeForce RTX 3060".
    pub name: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
    /// How it was found: `nvml` or `nvidia-smi`.
    pub source: String,
}

/// What a worker's probe detected. Sent with every registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// NVIDIA GPUs, empty when none.
    pub gpus: Vec<GpuInfo>,
    /// Logical CPU cores.
    pub cpu_cores: u32,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Free bytes on the file system of the data directory.
    pub disk_free_bytes: u64,
    /// Size of that file system in bytes.
    pub disk_total_bytes: u64,
    /// A publicly routable address of this machine, when it has one.
    pub public_address: Option<String>,
    /// The machine's hostname.
    pub hostname: Option<String>,
    /// Whether an OpenAI-compatible backend is configured (enables `ai`).
    pub ai_backend: bool,
}

/// The kinds of worker, one per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum WorkerType {
    /// Has an NVIDIA GPU.
    Gpu,
    /// Has more than 100 GB free.
    Storage,
    /// Is publicly reachable.
    Edge,
    /// Any machine.
    Cpu,
}

impl WorkerType {
    /// All types, most specific first (the order that picks a machine's primary type).
    pub const ALL: [WorkerType; 4] = [
        WorkerType::Gpu,
        WorkerType::Storage,
        WorkerType::Edge,
        WorkerType::Cpu,
    ];

    /// The lowercase name used on the wire and in `WORKER_TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerType::Gpu => "gpu",
            WorkerType::Storage => "storage",
            WorkerType::Edge => "edge",
            WorkerType::Cpu => "cpu",
        }
    }

    /// The services this capability brings (DESIGN.md's table). `ai` is added separately,
    /// wherever a backend is configured.
    pub fn services(self) -> &'static [&'static str] {
        match self {
            WorkerType::Gpu => &[service::OCR, service::ENHANCE],
            WorkerType::Storage => &[service::STORE, service::CACHE],
            WorkerType::Edge => &[service::COORDINATOR, service::EDGE_PROXY],
            WorkerType::Cpu => &[
                service::PDF_TEXT,
                service::EXTRACT,
                service::ENHANCE,
                service::OCR,
                service::ECHO,
            ],
        }
    }
}

impl fmt::Display for WorkerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `WORKER_TYPE` held a value other than auto|gpu|edge|storage|cpu.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown worker type {0:?} (expected auto, gpu, edge, storage or cpu)")]
pub struct UnknownWorkerType(pub String);

impl FromStr for WorkerType {
    type Err = UnknownWorkerType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gpu" => Ok(WorkerType::Gpu),
            "storage" => Ok(WorkerType::Storage),
            "edge" => Ok(WorkerType::Edge),
            "cpu" => Ok(WorkerType::Cpu),
            _ => Err(UnknownWorkerType(s.to_owned())),
        }
    }
}

/// The outcome of assignment: the worker's primary type, all its capabilities, its services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The most specific capability (gpu > storage > edge > cpu), or the forced one.
    pub worker_type: WorkerType,
    /// Every capability counted, most specific first; always ends with `cpu`.
    pub capabilities: Vec<WorkerType>,
    /// The services assigned, sorted and without duplicates.
    pub services: Vec<String>,
}

/// The capabilities a probe result amounts to, most specific first; `cpu` always.
pub fn detected(caps: &Capabilities) -> Vec<WorkerType> {
    let mut out = Vec::with_capacity(4);
    if !caps.gpus.is_empty() {
        out.push(WorkerType::Gpu);
    }
    if caps.disk_free_bytes > STORAGE_MIN_FREE_BYTES {
        out.push(WorkerType::Storage);
    }
    if caps.public_address.is_some() {
        out.push(WorkerType::Edge);
    }
    out.push(WorkerType::Cpu);
    out
}

/// Assigns services from capabilities.
///
/// - `forced` (`WORKER_TYPE`) replaces detection: the worker counts as that type plus `cpu`.
/// - `offered`, when the worker said which services it implements, narrows the result to those:
///   nobody is sent work it cannot run.
pub fn assign(
    caps: &Capabilities,
    forced: Option<WorkerType>,
    offered: Option<&[String]>,
) -> Assignment {
    let capabilities = match forced {
        Some(WorkerType::Cpu) => vec![WorkerType::Cpu],
        Some(t) => vec![t, WorkerType::Cpu],
        None => detected(caps),
    };
    let mut services: Vec<String> = capabilities
        .iter()
        .flat_map(|c| c.services().iter().map(|s| (*s).to_owned()))
        .collect();
    // `ai` follows the configuration, not the GPU: a CPU box may point at a model server
    // elsewhere on its network, and a GPU box without one cannot serve it.
    if caps.ai_backend {
        services.push(service::AI.to_owned());
    }
    if let Some(offered) = offered {
        services.retain(|s| offered.iter().any(|o| o == s));
    }
    services.sort();
    services.dedup();
    Assignment {
        worker_type: capabilities[0],
        capabilities,
        services,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu() -> GpuInfo {
        GpuInfo {
            name: "NVIDIA GeForce RTX 3060".into(),
            memory_mib: 12288,
            source: "nvml".into(),
        }
    }

    #[test]
    fn a_plain_machine_is_cpu_only() {
        let a = assign(&Capabilities::default(), None, None);
        assert_eq!(a.worker_type, WorkerType::Cpu);
        assert_eq!(a.capabilities, vec![WorkerType::Cpu]);
        assert_eq!(
            a.services,
            ["echo", "enhance", "extract", "ocr", "pdf-text"]
        );
    }

    #[test]
    fn every_detected_capability_counts() {
        let caps = Capabilities {
            gpus: vec![gpu()],
            disk_free_bytes: STORAGE_MIN_FREE_BYTES + 1,
            public_address: Some("203.0.114.7".into()),
            ..Default::default()
        };
        let a = assign(&caps, None, None);
        assert_eq!(a.worker_type, WorkerType::Gpu);
        assert_eq!(
            a.capabilities,
            [
                WorkerType::Gpu,
                WorkerType::Storage,
                WorkerType::Edge,
                WorkerType::Cpu
            ]
        );
        for s in ["store", "cache", "coordinator", "edge-proxy", "ocr", "echo"] {
            assert!(a.services.iter().any(|x| x == s), "missing {s}");
        }
        assert!(!a.services.iter().any(|x| x == "ai"), "ai needs a backend");
    }

    #[test]
    fn storage_needs_strictly_more_than_100_gb() {
        let mut caps = Capabilities {
            disk_free_bytes: STORAGE_MIN_FREE_BYTES,
            ..Default::default()
        };
        assert_eq!(detected(&caps), [WorkerType::Cpu]);
        caps.disk_free_bytes += 1;
        assert_eq!(detected(&caps), [WorkerType::Storage, WorkerType::Cpu]);
    }

    #[test]
    fn ai_only_with_a_backend() {
        let has_ai = |c: &Capabilities| assign(c, None, None).services.contains(&"ai".to_owned());
        let mut caps = Capabilities {
            gpus: vec![gpu()],
            ..Default::default()
        };
        assert!(!has_ai(&caps));
        caps.ai_backend = true;
        assert!(has_ai(&caps));
        caps.gpus.clear();
        assert!(
            has_ai(&caps),
            "a CPU box pointing at a model server offers ai too"
        );
    }

    #[test]
    fn forced_type_replaces_detection() {
        let caps = Capabilities {
            gpus: vec![gpu()],
            ..Default::default()
        };
        let a = assign(&caps, Some(WorkerType::Storage), None);
        assert_eq!(a.worker_type, WorkerType::Storage);
        assert_eq!(a.capabilities, [WorkerType::Storage, WorkerType::Cpu]);
        assert!(a.services.contains(&"store".to_owned()));
        let a = assign(&caps, Some(WorkerType::Cpu), None);
        assert_eq!(a.capabilities, [WorkerType::Cpu]);
    }

    #[test]
    fn offered_narrows_to_what_the_worker_implements() {
        let offered = vec!["echo".to_owned(), "teleport".to_owned()];
        let a = assign(&Capabilities::default(), None, Some(&offered));
        assert_eq!(a.services, ["echo"]);
    }

    #[test]
    fn worker_type_parses_case_insensitively() {
        assert_eq!("GPU".parse::<WorkerType>(), Ok(WorkerType::Gpu));
        assert!("auto".parse::<WorkerType>().is_err());
        assert_eq!(WorkerType::Storage.to_string(), "storage");
    }
}
