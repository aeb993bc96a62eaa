//! The web UI (`web/dist`) is embedded in the router. Cargo does not know that the embedding
//! macro read those files, so this script watches the folder and passes a stamp of its contents
//! to the compiler: a rebuilt UI changes the stamp, which rebuilds the router.
use std::path::Path;
use std::time::UNIX_EPOCH;

fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if let Ok(m) = e.metadata() {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.push(format!("{}:{}:{}", p.display(), m.len(), t));
        }
    }
}

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    println!(
        "cargo:rerun-if-changed={}",
        dist.join("index.html").display()
    );
    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    // A cheap, stable digest (FNV-1a) of names, sizes and times.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in files.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    println!("cargo:rustc-env=RMA_UI_STAMP={h:016x}-{}", files.len());
}
