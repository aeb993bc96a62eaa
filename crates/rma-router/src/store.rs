//! The durable coordinator registry: one SQLite file, the stand-in for a Durable Object.
//!
//! Written only when membership changes (register, deregister, expiry), never on heartbeats.
//! The schema carries a version (`PRAGMA user_version`) and [`Store::open`] migrates older files.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

/// Schema versions: 1 the table.
const MIGRATIONS: [&str; 1] = ["CREATE TABLE IF NOT EXISTS coordinators (
         id TEXT PRIMARY KEY NOT NULL,
         url TEXT NOT NULL,
         location TEXT,
         registered_at_ms INTEGER NOT NULL,
         last_seen_ms INTEGER NOT NULL
     )"];

/// A failure of the registry file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or migrating it (a file written by a newer rma, say).
    #[error(transparent)]
    Open(#[from] rma_http::sqlite::SqliteError),
    /// SQLite refused.
    #[error("coordinator registry database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A background write could not run.
    #[error("coordinator registry database task failed: {0}")]
    Task(String),
}

/// One persisted coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCoordinator {
    /// Id.
    pub(crate) id: String,
    /// URL the router reaches it at.
    pub(crate) url: String,
    /// Free text.
    pub(crate) location: Option<String>,
    /// Unix milliseconds.
    pub(crate) registered_at_ms: i64,
    /// Unix milliseconds of the last membership change seen (not every heartbeat).
    pub(crate) last_seen_ms: i64,
}

/// The registry file.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating or migrating) the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = rma_http::sqlite::open_versioned(
            "coordinator registry database",
            Some(path),
            &MIGRATIONS,
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own
        // transactions keep the file consistent, so carry on with the connection.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Every persisted coordinator.
    pub(crate) fn load_all(&self) -> Result<Vec<StoredCoordinator>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, url, location, registered_at_ms, last_seen_ms FROM coordinators ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredCoordinator {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    location: r.get(2)?,
                    registered_at_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// One coordinator.
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Result<Option<StoredCoordinator>, StoreError> {
        use rusqlite::OptionalExtension;
        self.with(|c| {
            c.query_row(
                "SELECT id, url, location, registered_at_ms, last_seen_ms FROM coordinators WHERE id = ?1",
                params![id],
                |r| {
                    Ok(StoredCoordinator {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        location: r.get(2)?,
                        registered_at_ms: r.get(3)?,
                        last_seen_ms: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Inserts or replaces a coordinator.
    pub(crate) fn upsert(&self, row: &StoredCoordinator) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO coordinators (id, url, location, registered_at_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET url = excluded.url, location = excluded.location,
                     last_seen_ms = excluded.last_seen_ms",
                params![
                    row.id,
                    row.url,
                    row.location,
                    row.registered_at_ms,
                    row.last_seen_ms
                ],
            )
            .map(|_| ())
        })
    }

    /// Deletes a coordinator; whether it was there.
    pub(crate) fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM coordinators WHERE id = ?1", params![id])? > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> StoredCoordinator {
        StoredCoordinator {
            id: id.into(),
            url: format!("http://{id}:8080"),
            location: Some("Leeds".into()),
            registered_at_ms: 1,
            last_seen_ms: 2,
        }
    }

    #[test]
    fn survives_reopening_and_keeps_registered_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        {
            let s = Store::open(&path).expect("open");
            s.upsert(&row("a")).expect("a");
            s.upsert(&row("b")).expect("b");
            let mut again = row("a");
            again.registered_at_ms = 99;
            again.url = "http://moved:1".into();
            s.upsert(&again).expect("again");
            assert!(s.delete("b").expect("delete"));
            assert!(!s.delete("b").expect("delete twice"));
        }
        let s = Store::open(&path).expect("reopen");
        let all = s.load_all().expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].url, "http://moved:1");
        assert_eq!(
            all[0].registered_at_ms, 1,
            "re-registration keeps the first time"
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .and_then(|c| c.pragma_update(None, "user_version", 9))
            .expect("set version");
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Open(rma_http::sqlite::SqliteError::TooNew {
                found: 9,
                ..
            }))
        ));
    }
}
