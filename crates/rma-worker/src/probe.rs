//! The capability probe: what this machine can offer. GPUs through NVML (falling back to
//! `nvidia-smi`), free disk of the data directory, CPU cores, memory, and whether any interface
//! holds a publicly routable address.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use rma_proto::{Capabilities, GpuInfo};

/// Probes the machine. Slow parts (NVML, `nvidia-smi`) are bounded; call it from a blocking
/// context.
pub fn probe(data_dir: &Path, ai_backend: bool) -> Capabilities {
    let (disk_free_bytes, disk_total_bytes) = disk_space(data_dir);
    Capabilities {
        gpus: gpus(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: memory_bytes(),
        disk_free_bytes,
        disk_total_bytes,
        public_address: public_address().map(|ip| ip.to_string()),
        hostname: hostname(),
        ai_backend,
    }
}

/// The machine's hostname.
pub fn hostname() -> Option<String> {
    sysinfo::System::host_name().ok().filter(|h| !h.is_empty())
}

fn memory_bytes() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()))
        .map_or(0, |s| s.total_memory())
}

/// Free and total bytes of the file system holding `dir` (the mount point that is the longest
/// prefix of its canonical path). A `dir` not made yet is measured where it would be made, at
/// its nearest existing parent; nothing is created (`rma probe` looks, it does not set up).
pub fn disk_space(dir: &Path) -> (u64, u64) {
    let existing = dir.ancestors().find_map(|a| {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        a.canonicalize().ok()
    });
    let Some(path) = existing else {
        return (0, 0);
    };
    let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() else {
        return (0, 0);
    };
    (&disks)
        .into_iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| (d.available_space(), d.total_space()))
}

/// NVIDIA GPUs: NVML first (no process), then `nvidia-smi`.
pub fn gpus() -> Vec<GpuInfo> {
    match gpus_nvml() {
        Ok(g) if !g.is_empty() => g,
        Ok(_) => Vec::new(),
        Err(e) => {
            tracing::debug!(error = %e, "NVML unavailable; trying nvidia-smi");
            gpus_nvidia_smi()
        }
    }
}

fn gpus_nvml() -> Result<Vec<GpuInfo>, nvml_wrapper::error::NvmlError> {
    let nvml = nvml_wrapper::Nvml::init()?;
    let mut out = Vec::new();
    for i in 0..nvml.device_count()? {
        let d = nvml.device_by_index(i)?;
        out.push(GpuInfo {
            name: d.name()?,
            memory_mib: d.memory_info()?.total / (1024 * 1024),
            source: "nvml".into(),
        });
    }
    Ok(out)
}

fn gpus_nvidia_smi() -> Vec<GpuInfo> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

/// Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter_map(|line| {
            let (name, mem) = line.rsplit_once(',')?;
            let name = name.trim();
            let memory_mib = mem.trim().parse().ok()?;
            (!name.is_empty()).then(|| GpuInfo {
                name: name.to_owned(),
                memory_mib,
                source: "nvidia-smi".into(),
            })
        })
        .collect()
}

/// The first publicly routable address on any interface.
pub fn public_address() -> Option<IpAddr> {
    let networks = sysinfo::Networks::new_with_refreshed_list().ok()?;
    let mut addrs: Vec<IpAddr> = (&networks)
        .into_iter()
        .flat_map(|(_, n)| n.ip_networks().iter().map(|ipn| ipn.addr))
        .filter(|ip| is_public(*ip))
        .collect();
    // Prefer IPv4, then the lowest address, so the answer is stable.
    addrs.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addrs.into_iter().next()
}

pub use rma_proto::urls::is_public;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_not_made_yet_is_measured_where_it_would_be_and_not_made() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, total_here) = disk_space(tmp.path());
        let later = tmp.path().join("not").join("yet");
        let (_, total) = disk_space(&later);
        assert!(total > 0, "the disk of its nearest existing parent");
        assert_eq!(total, total_here);
        assert!(!later.exists() && !tmp.path().join("not").exists());
    }

    #[test]
    fn nvidia_smi_output_parses() {
        let g = parse_nvidia_smi(
            "NVIDIA H100 80GB HBM3, 81559\nNVIDIA GeForce RTX 3060, 12288\n\ngarbage\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g[0].memory_mib, 81559);
        assert_eq!(g[1].source, "nvidia-smi");
    }

    #[test]
    fn probe_of_this_machine_is_sane() {
        let dir = tempfile::tempdir().expect("tempdir");
        let caps = probe(dir.path(), false);
        assert!(caps.cpu_cores >= 1);
        assert!(caps.memory_bytes > 0);
        assert!(caps.disk_total_bytes >= caps.disk_free_bytes);
        assert!(
            caps.disk_total_bytes > 0,
            "the temp dir's file system was found"
        );
    }
}
