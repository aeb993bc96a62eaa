//! Durable storage of one member: its Raft log, vote and commit index, and the latest snapshot
//! of the job log, in one SQLite file; the job log itself in memory, rebuilt on start from the
//! snapshot and the committed entries after it.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::machine::{Applied, Jobs};
use crate::{NodeId, TypeConfig};

type SErr = StorageError<NodeId>;

fn io_read(e: &(impl std::error::Error + 'static)) -> SErr {
    StorageIOError::read_logs(e).into()
}

fn io_write(e: &(impl std::error::Error + 'static)) -> SErr {
    StorageIOError::write_logs(e).into()
}

/// Opens (or makes) a member's SQLite file.
fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL);",
    )?;
    Ok(c)
}

fn get_meta<T: for<'de> Deserialize<'de>>(c: &Connection, key: &str) -> Result<Option<T>, SErr> {
    let text: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(|e| io_read(&e))?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| io_read(&e)))
        .transpose()
}

fn put_meta<T: Serialize>(c: &Connection, key: &str, value: &T) -> Result<(), SErr> {
    let text = serde_json::to_string(value).map_err(|e| io_write(&e))?;
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, text],
    )
    .map_err(|e| io_write(&e))?;
    Ok(())
}

/// The Raft log, vote and commit index of one member.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Mutex<Connection>>,
}

impl LogStore {
    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let db = self.db();
        let mut stmt = db
            .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(|e| io_read(&e))?;
        // SQLite integers are signed: indexes past i64::MAX do not exist.
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![clamp(start), clamp(end)], |r| r.get::<_, String>(0))
            .map_err(|e| io_read(&e))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(|e| io_read(&e))?;
            out.push(serde_json::from_str(&text).map_err(|e| io_read(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let db = self.db();
        let purged: Option<LogId<NodeId>> = get_meta(&db, "last_purged")?;
        let last: Option<String> = db
            .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| io_read(&e))?;
        let last = match last {
            Some(t) => Some(
                serde_json::from_str::<Entry<TypeConfig>>(&t)
                    .map_err(|e| io_read(&e))?
                    .log_id,
            ),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        put_meta(&self.db(), "vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        get_meta(&self.db(), "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        put_meta(&self.db(), "committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.db(), "committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let result = (|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| io_write(&e))?;
            for entry in entries {
                let text = serde_json::to_string(&entry).map_err(|e| io_write(&e))?;
                let idx = i64::try_from(entry.log_id.index).map_err(|e| io_write(&e))?;
                tx.execute(
                    "INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)",
                    params![idx, text],
                )
                .map_err(|e| io_write(&e))?;
            }
            tx.commit().map_err(|e| io_write(&e))
        })();
        // The transaction is on disk (synchronous = FULL) when it commits.
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let idx = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        self.db()
            .execute("DELETE FROM log WHERE idx >= ?1", [idx])
            .map_err(|e| io_write(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let db = self.db();
        put_meta(&db, "last_purged", &log_id)?;
        let idx = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        db.execute("DELETE FROM log WHERE idx <= ?1", [idx])
            .map_err(|e| io_write(&e))?;
        Ok(())
    }
}

/// A snapshot as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// What the state machine holds besides the jobs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Machine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    jobs: Jobs,
}

/// The job log of one member, applied from committed entries; cheap to clone.
#[derive(Clone, Debug)]
pub struct StateMachine {
    db: Arc<Mutex<Connection>>,
    machine: Arc<RwLock<Machine>>,
    /// Bumped after every apply: runners wake on it.
    applied: Arc<watch::Sender<u64>>,
}

impl StateMachine {
    /// Reads the job log.
    pub fn read<R>(&self, f: impl FnOnce(&Jobs) -> R) -> R {
        f(&self.machine.read().unwrap_or_else(|p| p.into_inner()).jobs)
    }

    /// Wakes on every apply.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `bytes` in this member's blob store; their content hash.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, crate::ReplicaError> {
        let hash = crate::content_hash(bytes);
        self.db()
            .execute(
                "INSERT OR IGNORE INTO blobs (hash, bytes) VALUES (?1, ?2)",
                params![hash, bytes],
            )
            .map_err(|e| crate::ReplicaError::Storage(e.to_string()))?;
        Ok(hash)
    }

    /// The blob `hash`, when this member keeps it.
    pub fn get_blob(&self, hash: &str) -> Option<Vec<u8>> {
        self.db()
            .query_row("SELECT bytes FROM blobs WHERE hash = ?1", [hash], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    fn snapshot_of(&self) -> Result<StoredSnapshot, SErr> {
        let m = self.machine.read().unwrap_or_else(|p| p.into_inner());
        let data =
            serde_json::to_vec(&m.jobs).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let id = match m.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_owned(),
        };
        Ok(StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: m.last_applied,
                last_membership: m.membership.clone(),
                snapshot_id: id,
            },
            data,
        })
    }
}

/// Opens a member's storage at `path`: its log store and its state machine (as of its last
/// snapshot; openraft applies the committed entries after it).
pub fn open_storage(path: &Path) -> Result<(LogStore, StateMachine), crate::ReplicaError> {
    let conn = open(path).map_err(|e| crate::ReplicaError::Storage(e.to_string()))?;
    let snap: Option<StoredSnapshot> =
        get_meta(&conn, "snapshot").map_err(|e| crate::ReplicaError::Storage(e.to_string()))?;
    let machine = match snap {
        Some(s) => Machine {
            last_applied: s.meta.last_log_id,
            membership: s.meta.last_membership.clone(),
            jobs: serde_json::from_slice(&s.data)
                .map_err(|e| crate::ReplicaError::Storage(format!("snapshot: {e}")))?,
        },
        None => Machine::default(),
    };
    let db = Arc::new(Mutex::new(conn));
    Ok((
        LogStore { db: db.clone() },
        StateMachine {
            db,
            machine: Arc::new(RwLock::new(machine)),
            applied: Arc::new(watch::Sender::new(0)),
        },
    ))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let snap = self.snapshot_of()?;
        put_meta(&self.db(), "snapshot", &snap)?;
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        let m = self.machine.read().unwrap_or_else(|p| p.into_inner());
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        {
            let mut m = self.machine.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                m.last_applied = Some(entry.log_id);
                out.push(match entry.payload {
                    EntryPayload::Blank => Applied {
                        ok: true,
                        reason: String::new(),
                    },
                    EntryPayload::Normal(cmd) => {
                        // A deleted job's blobs go when no other job names them.
                        let freed = match &cmd {
                            crate::Command::Delete { job } => m.jobs.blobs_of(job),
                            _ => Vec::new(),
                        };
                        let applied = m.jobs.apply(cmd);
                        for hash in freed.iter().filter(|h| !m.jobs.references(h)) {
                            let _ = self
                                .db()
                                .execute("DELETE FROM blobs WHERE hash = ?1", [hash]);
                        }
                        applied
                    }
                    EntryPayload::Membership(mem) => {
                        m.membership = StoredMembership::new(Some(entry.log_id), mem);
                        Applied {
                            ok: true,
                            reason: String::new(),
                        }
                    }
                });
            }
        }
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let jobs: Jobs = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        put_meta(
            &self.db(),
            "snapshot",
            &StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )?;
        {
            let mut m = self.machine.write().unwrap_or_else(|p| p.into_inner());
            *m = Machine {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                jobs,
            };
        }
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let snap: Option<StoredSnapshot> = get_meta(&self.db(), "snapshot")?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};

    use super::{LogStore, StateMachine, open_storage};
    use crate::{NodeId, TypeConfig};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(|e| super::io_write(&e))?;
            let (log, sm) = open_storage(&dir.path().join("replica.db"))
                .map_err(|e| super::io_write(&std::io::Error::other(e.to_string())))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn the_store_passes_openraft_s_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}

#[cfg(test)]
mod blob_tests {
    use super::open_storage;

    #[test]
    fn blobs_are_kept_by_their_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, sm) = open_storage(&dir.path().join("replica.db")).expect("open");
        let h = sm.put_blob(b"a letter").expect("kept");
        assert_eq!(h, crate::content_hash(b"a letter"));
        assert_eq!(sm.put_blob(b"a letter").expect("again"), h, "kept once");
        assert_eq!(sm.get_blob(&h).as_deref(), Some(&b"a letter"[..]));
        assert_eq!(sm.get_blob("00"), None);
    }
}
