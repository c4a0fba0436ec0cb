//! The directory's queries that need none of its types: the version counter
//! and epoch, the department tree's shape, and lookups for CSV import and
//! export. (Queries returning `Department` or `Person` stay in
//! `directory.rs` until those types move below the domains.)

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::ServiceError;

/// Takes the next directory version (inside the caller's transaction).
pub fn next_version(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dir_version' RETURNING CAST(value AS INTEGER)",
        [],
        |r| r.get(0),
    )
}

/// Makes every client rebuild its directory copy (visibility may have changed).
pub fn bump_epoch(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dir_epoch'", [])?;
    Ok(())
}

/// Whether any live department is hidden (moves then change what people see).
pub fn has_hidden(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM departments WHERE hidden = 1 AND deleted = 0)", [], |r| {
        r.get(0)
    })
}

/// `NotFound` unless `id` is a live department.
pub fn department_exists(conn: &Connection, id: u64) -> Result<(), ServiceError> {
    let ok: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM departments WHERE id = ?1 AND deleted = 0)",
        [id],
        |r| r.get(0),
    )?;
    if ok {
        Ok(())
    } else {
        Err(ServiceError::NotFound("department"))
    }
}

/// Ancestors of `id` (nearest first), to refuse moving a department under itself.
pub fn ancestors(conn: &Connection, id: u64) -> Result<Vec<u64>, ServiceError> {
    let mut out = Vec::new();
    let mut current = Some(id);
    while let Some(c) = current {
        current = conn
            .prepare_cached("SELECT parent_id FROM departments WHERE id = ?1")?
            .query_row([c], |r| r.get::<_, Option<u64>>(0))
            .optional()?
            .flatten();
        if let Some(p) = current {
            if out.contains(&p) || out.len() > 10_000 {
                return Err(ServiceError::Internal("department tree has a cycle".into()));
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// The department and all departments below it.
pub fn subtree(conn: &Connection, root: u64) -> Result<Vec<u64>, ServiceError> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE t(id) AS (SELECT ?1 UNION ALL SELECT d.id FROM departments d JOIN t ON d.parent_id = t.id WHERE d.deleted = 0)
         SELECT id FROM t",
    )?;
    let rows = stmt.query_map([root], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The live department named `name` directly under `parent` (the oldest, if
/// several), for an import's department paths.
pub fn department_named(conn: &Connection, parent: Option<u64>, name: &str) -> rusqlite::Result<Option<u64>> {
    conn.query_row(
        "SELECT id FROM departments WHERE parent_id IS ?1 AND name = ?2 AND deleted = 0 ORDER BY id LIMIT 1",
        params![parent, name],
        |r| r.get(0),
    )
    .optional()
}

/// Every person's account name by id, for an export.
pub fn account_names(conn: &Connection) -> rusqlite::Result<HashMap<u64, String>> {
    let mut accounts: HashMap<u64, String> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, account FROM users")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?)))? {
        let (id, account) = row?;
        accounts.insert(id, account);
    }
    Ok(accounts)
}

/// Whether `a` and `b` are (or were) members of a common conversation.
pub fn share_a_conversation(conn: &Connection, a: u64, b: u64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM members x JOIN members y ON y.conversation_id = x.conversation_id AND y.user_id = ?2
         WHERE x.user_id = ?1 LIMIT 1",
    )?
    .exists(params![a, b])
}
