//! Bounds on what `store` and `cache` keep on a volunteer's disk: a total size, past which the
//! least recently written objects go first, and an age, past which every object goes (the
//! retention that applies to every copy, even one on a machine that was offline when its job
//! was deleted). Enforced off the request path, at most once a minute, after a write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// One directory's bounds.
#[derive(Debug)]
pub(crate) struct Quota {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    last: Mutex<Option<Instant>>,
}

impl Quota {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64, max_age: Duration) -> Self {
        Quota {
            dir,
            max_bytes,
            max_age,
            last: Mutex::new(None),
        }
    }

    /// After a write: enforces the bounds in the background unless that ran within a minute.
    pub(crate) fn after_write(self: &std::sync::Arc<Self>) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let (removed, bytes) = me.enforce(SystemTime::now());
            if removed > 0 {
                tracing::info!(dir = %me.dir.display(), removed, kept_bytes = bytes, "old or over-quota objects removed");
            }
        });
    }

    /// Removes objects older than the age, then the oldest until under the size; returns how
    /// many were removed and the bytes kept.
    pub(crate) fn enforce(&self, now: SystemTime) -> (usize, u64) {
        let mut files = Vec::new();
        walk(&self.dir, &mut files);
        // Oldest first.
        files.sort_by_key(|(_, modified, _)| *modified);
        let mut total: u64 = files.iter().map(|(_, _, size)| size).sum();
        let mut removed = 0;
        for (path, modified, size) in files {
            let old = now.duration_since(modified).unwrap_or_default() > self.max_age;
            if !old && total <= self.max_bytes {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                let _ = std::fs::remove_file(path.with_extension("type"));
                total = total.saturating_sub(size);
                removed += 1;
            }
        }
        (removed, total)
    }
}

/// Every object file under `dir` (not the `.type` companions, not temporary files).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(&path, out);
        } else if path.extension().is_none()
            && !path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((path, modified, meta.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_objects_go_then_the_oldest_until_under_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let put = |name: &str, size: usize| {
            let p = dir.path().join(&name[..2]).join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(&p, vec![0u8; size]).expect("write");
            std::fs::write(p.with_extension("type"), "x").expect("type");
            std::thread::sleep(Duration::from_millis(20));
            p
        };
        let a = put("aa01", 400);
        let b = put("bb02", 400);
        let c = put("cc03", 400);
        let q = Quota::new(dir.path().into(), 1000, Duration::from_secs(3600));
        assert_eq!(q.enforce(SystemTime::now()), (1, 800));
        assert!(
            !a.exists() && !a.with_extension("type").exists(),
            "the oldest went"
        );
        assert!(b.exists() && c.exists());
        // Everything is old a day later.
        let later = SystemTime::now() + Duration::from_secs(86_400);
        assert_eq!(q.enforce(later), (2, 0));
        assert!(!b.exists() && !c.exists());
    }
}
