//! The durable coordinator registry: one SQLite file, the stand-in for a Durable Object.
//!
//! Written only when membership changes (register, deregister, expiry), never on heartbeats.
//! The schema carries a version (`PRAGMA user_version`) and [`Store::open`] migrates older files.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

/// Schema versions: 1 the coordinators; 2 membership: invites (only a hash of each join
/// token's secret) and enrolled nodes.
const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS coordinators (
         id TEXT PRIMARY KEY NOT NULL,
         url TEXT NOT NULL,
         location TEXT,
         registered_at_ms INTEGER NOT NULL,
         last_seen_ms INTEGER NOT NULL
     )",
    "CREATE TABLE IF NOT EXISTS invites (
         secret_hash TEXT PRIMARY KEY NOT NULL,
         role TEXT NOT NULL,
         services TEXT,
         owner TEXT,
         uses_left INTEGER NOT NULL,
         expires_at_ms INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS nodes (
         node_id TEXT PRIMARY KEY NOT NULL,
         role TEXT NOT NULL,
         services TEXT,
         owner TEXT,
         public_key TEXT NOT NULL,
         enrolled_at_ms INTEGER NOT NULL,
         revoked_at_ms INTEGER
     );",
];

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

/// An enrolled node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredNode {
    pub(crate) node_id: String,
    pub(crate) role: String,
    pub(crate) services: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
    pub(crate) public_key: String,
    pub(crate) enrolled_at_ms: i64,
    pub(crate) revoked_at_ms: Option<i64>,
}

/// What an invite allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredInvite {
    pub(crate) role: String,
    pub(crate) services: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
}

fn services_from(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn services_to(services: &Option<Vec<String>>) -> Option<String> {
    services
        .as_ref()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
}

fn node_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredNode> {
    Ok(StoredNode {
        node_id: r.get(0)?,
        role: r.get(1)?,
        services: services_from(r.get(2)?),
        owner: r.get(3)?,
        public_key: r.get(4)?,
        enrolled_at_ms: r.get(5)?,
        revoked_at_ms: r.get(6)?,
    })
}

const NODE_COLUMNS: &str =
    "node_id, role, services, owner, public_key, enrolled_at_ms, revoked_at_ms";

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

    /// Keeps an invite (the hash of its secret, never the secret); drops expired ones, so the
    /// table does not grow without bound.
    pub(crate) fn add_invite(
        &self,
        secret_hash: &str,
        invite: &StoredInvite,
        uses: u32,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM invites WHERE expires_at_ms < ?1 OR uses_left <= 0",
                params![now_ms],
            )?;
            c.execute(
                "INSERT INTO invites (secret_hash, role, services, owner, uses_left, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    secret_hash,
                    invite.role,
                    services_to(&invite.services),
                    invite.owner,
                    uses,
                    expires_at_ms
                ],
            )
            .map(|_| ())
        })
    }

    /// Uses an invite once, if it is there, unexpired and not used up: in one statement, so
    /// two nodes racing for the last use cannot both have it.
    pub(crate) fn take_invite(
        &self,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<Option<StoredInvite>, StoreError> {
        use rusqlite::OptionalExtension;
        self.with(|c| {
            c.query_row(
                "UPDATE invites SET uses_left = uses_left - 1
                 WHERE secret_hash = ?1 AND uses_left > 0 AND expires_at_ms >= ?2
                 RETURNING role, services, owner",
                params![secret_hash, now_ms],
                |r| {
                    Ok(StoredInvite {
                        role: r.get(0)?,
                        services: services_from(r.get(1)?),
                        owner: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Records an enrolled node, unless its id is taken by another key: then `false`.
    pub(crate) fn add_node(&self, node: &StoredNode) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO nodes (node_id, role, services, owner, public_key, enrolled_at_ms, revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
                 ON CONFLICT(node_id) DO UPDATE SET role = excluded.role,
                     services = excluded.services, owner = excluded.owner,
                     enrolled_at_ms = excluded.enrolled_at_ms
                 WHERE nodes.public_key = excluded.public_key AND nodes.revoked_at_ms IS NULL",
                params![
                    node.node_id,
                    node.role,
                    services_to(&node.services),
                    node.owner,
                    node.public_key,
                    node.enrolled_at_ms
                ],
            )?;
            Ok(n > 0)
        })
    }

    /// One node.
    pub(crate) fn node(&self, node_id: &str) -> Result<Option<StoredNode>, StoreError> {
        use rusqlite::OptionalExtension;
        self.with(|c| {
            c.query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE node_id = ?1"),
                params![node_id],
                node_of,
            )
            .optional()
        })
    }

    /// Every node.
    pub(crate) fn nodes(&self) -> Result<Vec<StoredNode>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {NODE_COLUMNS} FROM nodes ORDER BY node_id"
            ))?;
            let rows = stmt.query_map([], node_of)?;
            rows.collect()
        })
    }

    /// Marks a node revoked (recording it even if it never enrolled here); whether it was
    /// known.
    pub(crate) fn revoke(&self, node_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE nodes SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE node_id = ?1",
                params![node_id, now_ms],
            )?;
            if n == 0 {
                c.execute(
                    "INSERT INTO nodes (node_id, role, services, owner, public_key, enrolled_at_ms, revoked_at_ms)
                     VALUES (?1, 'unknown', NULL, NULL, '', ?2, ?2)",
                    params![node_id, now_ms],
                )?;
            }
            Ok(n > 0)
        })
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
    fn invites_are_used_up_and_expire_and_ids_stay_with_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("r.db")).expect("open");
        let inv = StoredInvite {
            role: "worker".into(),
            services: Some(vec!["ocr".into()]),
            owner: Some("alice".into()),
        };
        s.add_invite("h1", &inv, 2, 1000, 0).expect("add");
        assert_eq!(s.take_invite("h1", 10).expect("take"), Some(inv.clone()));
        assert_eq!(s.take_invite("h1", 2000).expect("expired"), None);
        assert!(s.take_invite("h1", 10).expect("take").is_some());
        assert_eq!(s.take_invite("h1", 10).expect("used up"), None);
        assert_eq!(s.take_invite("nope", 10).expect("unknown"), None);

        let node = |key: &str| StoredNode {
            node_id: "w1".into(),
            role: "worker".into(),
            services: None,
            owner: None,
            public_key: key.into(),
            enrolled_at_ms: 5,
            revoked_at_ms: None,
        };
        assert!(s.add_node(&node("k1")).expect("add"));
        assert!(s.add_node(&node("k1")).expect("same key again"));
        assert!(!s.add_node(&node("k2")).expect("another key"));
        assert!(s.revoke("w1", 9).expect("revoke"));
        assert!(!s.add_node(&node("k1")).expect("revoked stays revoked"));
        assert_eq!(
            s.node("w1").expect("get").expect("row").revoked_at_ms,
            Some(9)
        );
        assert!(!s.revoke("ghost", 9).expect("unknown"));
        assert_eq!(s.nodes().expect("all").len(), 2);
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
