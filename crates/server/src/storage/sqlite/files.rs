//! The files' rows in SQLite (`files`, `file_owners`, `file_refs`).

use std::collections::HashSet;

use hutong_protocol::files::{CheckedManifest, Hash};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::error::ServiceError;
use crate::storage::files::FilesStore;

fn manifest_from_row(id: &Hash, row: &rusqlite::Row<'_>) -> rusqlite::Result<CheckedManifest> {
    let chunks: Vec<u8> = row.get(3)?;
    let content: Vec<u8> = row.get(2)?;
    Ok(CheckedManifest {
        id: *id,
        size: row.get(0)?,
        chunk_size: row.get(1)?,
        content_hash: content.try_into().unwrap_or([0; 32]),
        chunks: chunks.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect(),
    })
}

impl FilesStore for Connection {
    fn file_quota_used(&self, user: u64) -> Result<u64, ServiceError> {
        Ok(self
            .prepare_cached("SELECT coalesce(sum(size), 0) FROM file_owners WHERE user_id = ?1")?
            .query_row([user], |r| r.get(0))?)
    }

    fn owns_file(&self, user: u64, id: &Hash) -> Result<bool, ServiceError> {
        Ok(self
            .prepare_cached("SELECT 1 FROM file_owners WHERE user_id = ?1 AND file_id = ?2")?
            .exists(params![user, &id[..]])?)
    }

    fn record_file(&self, f: &CheckedManifest, now_ms: i64) -> Result<(), ServiceError> {
        let chunks: Vec<u8> = f.chunks.iter().flatten().copied().collect();
        self.prepare_cached(
            "INSERT INTO files (id, size, chunk_size, content_hash, chunks, committed, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![&f.id[..], f.size, f.chunk_size, &f.content_hash[..], chunks, now_ms])?;
        Ok(())
    }

    fn add_file_owner(&self, user: u64, id: &Hash, now_ms: i64) -> Result<(), ServiceError> {
        self.prepare_cached(
            "INSERT INTO file_owners (user_id, file_id, size, created_at)
             SELECT ?1, id, size, ?3 FROM files WHERE id = ?2 ON CONFLICT DO NOTHING",
        )?
        .execute(params![user, &id[..], now_ms])?;
        Ok(())
    }

    fn commit_file(&self, id: &Hash) -> Result<(), ServiceError> {
        self.prepare_cached("UPDATE files SET committed = 1 WHERE id = ?1")?.execute([&id[..]])?;
        Ok(())
    }

    fn committed_file_size(&self, id: &Hash) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .prepare_cached("SELECT size FROM files WHERE id = ?1 AND committed = 1")?
            .query_row([&id[..]], |r| r.get(0))
            .optional()?)
    }

    fn may_read_file(&self, user: u64, id: &Hash) -> Result<bool, ServiceError> {
        if self.owns_file(user, id)? {
            return Ok(true);
        }
        Ok(self
            .prepare_cached(
                "SELECT 1 FROM file_refs r JOIN members m ON m.conversation_id = r.conversation_id AND m.user_id = ?2
                 WHERE r.file_id = ?1 AND (m.active = 1 OR r.seq <= coalesce(m.until_seq, 0)) LIMIT 1",
            )?
            .exists(params![&id[..], user])?)
    }

    fn file_manifest(
        &self,
        id: &Hash,
        committed_only: bool,
    ) -> Result<Option<CheckedManifest>, ServiceError> {
        let sql = if committed_only {
            "SELECT size, chunk_size, content_hash, chunks FROM files WHERE id = ?1 AND committed = 1"
        } else {
            "SELECT size, chunk_size, content_hash, chunks FROM files WHERE id = ?1"
        };
        Ok(self.prepare_cached(sql)?.query_row([&id[..]], |r| manifest_from_row(id, r)).optional()?)
    }

    fn add_file_refs(&self, conversation_id: u64, seq: u64, ids: &[Hash]) -> Result<(), ServiceError> {
        for id in ids {
            self.prepare_cached(
                "INSERT INTO file_refs (file_id, conversation_id, seq) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![&id[..], conversation_id, seq])?;
        }
        Ok(())
    }

    fn file_is_referenced(&self, id: &Hash) -> Result<bool, ServiceError> {
        Ok(self.prepare_cached("SELECT 1 FROM file_refs WHERE file_id = ?1")?.exists([&id[..]])?)
    }

    fn forget_unreferenced_files(&self, cutoff_ms: i64) -> Result<usize, ServiceError> {
        let orphan = "SELECT id FROM files f WHERE f.created_at < ?1
                      AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = f.id)";
        self.execute(&format!("DELETE FROM file_owners WHERE file_id IN ({orphan})"), [cutoff_ms])?;
        Ok(self.execute(&format!("DELETE FROM files WHERE id IN ({orphan})"), [cutoff_ms])?)
    }

    fn named_chunks(&self) -> Result<HashSet<Hash>, ServiceError> {
        let mut stmt = self.prepare("SELECT chunks FROM files")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut set = HashSet::new();
        for row in rows {
            for c in row?.chunks_exact(32) {
                set.insert(c.try_into().unwrap_or([0; 32]));
            }
        }
        Ok(set)
    }
}
