//! The capability probe: what this machine can offer. GPUs through NVML (falling back to
//! `nvidia-smi`), free disk of the data directory, CPU cores, memory, and whether any interface
//! holds a publicly routable address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
/// prefix of its canonical path). The directory is created when missing.
pub fn disk_space(dir: &Path) -> (u64, u64) {
    let _ = std::fs::create_dir_all(dir);
    let Ok(path) = dir.canonicalize() else {
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

/// Whether an address is publicly routable. Private, loopback, link-local, carrier-grade NAT
/// (100.64/10), Docker's bridge pools, documentation, benchmarking, multicast and reserved
/// ranges are not; nor are IPv6 unique-local, link-local, documentation or mapped addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let private_or_special = ip.is_private() // 10/8, 172.16/12 (Docker's 172.17–31 bridges), 192.168/16 (Docker's 192.168 pools)
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240; // reserved
    !private_or_special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let special = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64
        || s[0] == 0; // IPv4-compatible and other reserved
    !special && (s[0] & 0xe000) == 0x2000 // global unicast is 2000::/3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("an IP"))
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.17.0.2",   // docker0
            "172.31.255.1", // docker pools
            "192.168.1.20",
            "127.0.0.1",
            "169.254.10.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd12:3456::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(!public(ip), "{ip} must not count as public");
        }
    }

    #[test]
    fn routable_addresses_are_public() {
        for ip in [
            "81.2.69.160",
            "100.128.0.1",
            "172.32.0.1",
            "2a00:1450:4009::1",
            "::ffff:81.2.69.160",
        ] {
            assert!(public(ip), "{ip} is public");
        }
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
