//! Opening a role's SQLite file: WAL, a busy timeout, and a schema version in `user_version`
//! brought up to date by migrations, each run once in its own transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// A failure opening a SQLite file.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite refused.
    #[error("{what}: {source}")]
    Sqlite {
        /// Which file.
        what: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file was written by a newer rma.
    #[error("{what} has schema version {found}, newer than this rma understands ({known})")]
    TooNew {
        /// Which file.
        what: &'static str,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

/// Opens (creating it and its folder) the SQLite file at `path`, in memory when `None`, and
/// migrates it: `migrations[i]` takes the schema from version `i` to `i + 1`.
pub fn open_versioned(
    what: &'static str,
    path: Option<&Path>,
    migrations: &[&str],
) -> Result<Connection, SqliteError> {
    let err = |source| SqliteError::Sqlite { what, source };
    let conn = match path {
        Some(p) => {
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                // A failure here shows as SQLite's own "unable to open" just below.
                let _ = std::fs::create_dir_all(parent);
            }
            Connection::open(p).map_err(err)?
        }
        None => Connection::open_in_memory().map_err(err)?,
    };
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    let known = migrations.len() as i64;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if found > known {
        return Err(SqliteError::TooNew { what, found, known });
    }
    for (v, sql) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            v + 1
        ))
        .map_err(err)?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/x.db");
        let v1 = ["CREATE TABLE t (a INTEGER)"];
        let conn = open_versioned("test file", Some(&path), &v1).expect("v1");
        conn.execute("INSERT INTO t VALUES (1)", [])
            .expect("insert");
        drop(conn);
        let v2 = [
            "CREATE TABLE t (a INTEGER)",
            "ALTER TABLE t ADD COLUMN b TEXT",
        ];
        let conn = open_versioned("test file", Some(&path), &v2).expect("v2");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t WHERE b IS NULL", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1, "the row survived the migration");
        drop(conn);
        let e = open_versioned("test file", Some(&path), &v1).expect_err("too new");
        assert!(
            matches!(
                e,
                SqliteError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{e}"
        );
    }
}
