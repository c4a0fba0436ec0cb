//! The directory's rows in SQLite (`departments`, `user_departments`, the
//! directory fields of `users`, the `dir_version`/`dir_epoch` settings).

use std::collections::HashMap;

use hutong_protocol::v1;
use rusqlite::{params, Connection, OptionalExtension};

use super::{like_escape, setting};
use crate::error::ServiceError;
use crate::storage::directory::{Department, DepartmentChange, DirectoryStore, PeopleFilter, Person};

const PERSON_COLUMNS: &str = "u.id, u.account, u.display_name, u.employee_no, u.title, u.phone, u.email, u.avatar,
    u.primary_department_id, u.manager_id, u.disabled, u.deleted, u.roles, u.pinyin, u.initials, u.dir_version,
    (SELECT group_concat(department_id) FROM user_departments ud WHERE ud.user_id = u.id)";

fn person_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Person> {
    let disabled: bool = r.get(10)?;
    let deleted: bool = r.get(11)?;
    let roles: String = r.get(12)?;
    let further: Option<String> = r.get(16)?;
    let mut department_ids: Vec<u64> =
        further.unwrap_or_default().split(',').filter_map(|p| p.parse().ok()).collect();
    department_ids.sort_unstable();
    Ok(Person {
        id: r.get(0)?,
        account: r.get(1)?,
        display_name: r.get(2)?,
        employee_no: r.get(3)?,
        title: r.get(4)?,
        phone: r.get(5)?,
        email: r.get(6)?,
        avatar: r.get(7)?,
        primary_department_id: r.get(8)?,
        department_ids,
        manager_id: r.get(9)?,
        status: if deleted {
            "deleted"
        } else if disabled {
            "disabled"
        } else {
            "active"
        },
        roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        online: false,
        pinyin: r.get(13)?,
        initials: r.get(14)?,
        version: r.get(15)?,
    })
}

impl DirectoryStore for Connection {
    fn next_dir_version(&self) -> Result<u64, ServiceError> {
        Ok(self.query_row(
            "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dir_version' RETURNING CAST(value AS INTEGER)",
            [],
            |r| r.get(0),
        )?)
    }

    fn bump_dir_epoch(&self) -> Result<(), ServiceError> {
        self.execute("UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dir_epoch'", [])?;
        Ok(())
    }

    fn dir_version(&self) -> Result<u64, ServiceError> {
        Ok(setting(self, "dir_version")?.parse().unwrap_or(0))
    }

    fn dir_epoch(&self) -> Result<u64, ServiceError> {
        Ok(setting(self, "dir_epoch")?.parse().unwrap_or(1))
    }

    fn has_hidden_departments(&self) -> Result<bool, ServiceError> {
        Ok(self.query_row(
            "SELECT EXISTS (SELECT 1 FROM departments WHERE hidden = 1 AND deleted = 0)",
            [],
            |r| r.get(0),
        )?)
    }

    fn department_exists(&self, id: u64) -> Result<(), ServiceError> {
        let ok: bool = self.query_row(
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

    fn department_ancestors(&self, id: u64) -> Result<Vec<u64>, ServiceError> {
        let mut out = Vec::new();
        let mut current = Some(id);
        while let Some(c) = current {
            current = self
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

    fn department_subtree(&self, root: u64) -> Result<Vec<u64>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "WITH RECURSIVE t(id) AS (SELECT ?1 UNION ALL SELECT d.id FROM departments d JOIN t ON d.parent_id = t.id WHERE d.deleted = 0)
             SELECT id FROM t",
        )?;
        let rows = stmt.query_map([root], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn department_named(&self, parent: Option<u64>, name: &str) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .query_row(
                "SELECT id FROM departments WHERE parent_id IS ?1 AND name = ?2 AND deleted = 0 ORDER BY id LIMIT 1",
                params![parent, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The two counts use the indexes on primary and further departments,
    /// not a scan of everyone.
    fn departments(&self, id: Option<u64>) -> Result<Vec<Department>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT d.id, d.parent_id, d.name, d.sort_order, d.hidden,
                (SELECT count(*) FROM users u WHERE u.primary_department_id = d.id AND u.deleted = 0)
                + (SELECT count(*) FROM user_departments ud JOIN users u ON u.id = ud.user_id
                   WHERE ud.department_id = d.id AND u.deleted = 0 AND u.primary_department_id IS NOT d.id)
             FROM departments d WHERE d.deleted = 0 AND (?1 IS NULL OR d.id = ?1) ORDER BY d.parent_id, d.sort_order, d.id",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Department {
                id: r.get(0)?,
                parent_id: r.get(1)?,
                name: r.get(2)?,
                sort_order: r.get(3)?,
                hidden: r.get(4)?,
                member_count: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn department_tree(&self) -> Result<Vec<(u64, Option<u64>, bool)>, ServiceError> {
        let mut stmt = self.prepare_cached("SELECT id, parent_id, hidden FROM departments")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn next_sort_order(&self, parent: Option<u64>) -> Result<i64, ServiceError> {
        Ok(self.query_row(
            "SELECT coalesce(max(sort_order), 0) + 10 FROM departments WHERE parent_id IS ?1 AND deleted = 0",
            [parent],
            |r| r.get(0),
        )?)
    }

    fn insert_department(
        &self,
        parent: Option<u64>,
        name: &str,
        sort_order: i64,
        hidden: bool,
        version: u64,
    ) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO departments (parent_id, name, sort_order, hidden, version) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![parent, name, sort_order, hidden, version],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn update_department(&self, d: &Department, version: u64) -> Result<(), ServiceError> {
        self.execute(
            "UPDATE departments SET name = ?2, parent_id = ?3, sort_order = ?4, hidden = ?5, version = ?6 WHERE id = ?1",
            params![d.id, d.name, d.parent_id, d.sort_order, d.hidden, version],
        )?;
        Ok(())
    }

    fn live_child_departments(&self, id: u64) -> Result<u64, ServiceError> {
        Ok(self.query_row(
            "SELECT count(*) FROM departments WHERE parent_id = ?1 AND deleted = 0",
            [id],
            |r| r.get(0),
        )?)
    }

    fn delete_department(&self, id: u64, version: u64) -> Result<(), ServiceError> {
        self.execute("UPDATE departments SET deleted = 1, version = ?2 WHERE id = ?1", params![id, version])?;
        Ok(())
    }

    fn person(&self, id: u64) -> Result<Option<Person>, ServiceError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM users u WHERE u.id = ?1");
        Ok(self.prepare_cached(&sql)?.query_row([id], person_from_row).optional()?)
    }

    fn person_by_account(&self, account: &str) -> Result<Option<Person>, ServiceError> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM users u WHERE u.account = ?1");
        Ok(self.prepare_cached(&sql)?.query_row([account], person_from_row).optional()?)
    }

    fn insert_person(
        &self,
        account: &str,
        display_name: &str,
        password_hash: &str,
        must_change: bool,
        created_at: i64,
    ) -> Result<u64, ServiceError> {
        self.execute(
            "INSERT INTO users (account, display_name, password_hash, must_change_password, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![account, display_name, password_hash, must_change, created_at],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn update_person(
        &self,
        p: &Person,
        roles: &str,
        disabled: bool,
        version: u64,
    ) -> Result<(), ServiceError> {
        self.execute(
            "UPDATE users SET display_name = ?2, employee_no = ?3, title = ?4, phone = ?5, email = ?6, avatar = ?7,
                primary_department_id = ?8, manager_id = ?9, roles = ?10, disabled = ?11, pinyin = ?12, initials = ?13,
                dir_version = ?14, is_admin = ?15
             WHERE id = ?1",
            params![
                p.id,
                p.display_name,
                p.employee_no,
                p.title,
                p.phone,
                p.email,
                p.avatar,
                p.primary_department_id,
                p.manager_id,
                roles,
                disabled,
                p.pinyin,
                p.initials,
                version,
                // The older flag the accounts still read.
                roles.split(',').any(|r| r == "admin")
            ],
        )?;
        Ok(())
    }

    fn set_person_departments(&self, id: u64, departments: &[u64]) -> Result<(), ServiceError> {
        self.execute("DELETE FROM user_departments WHERE user_id = ?1", [id])?;
        for d in departments {
            self.execute(
                "INSERT INTO user_departments (user_id, department_id) VALUES (?1, ?2)",
                params![id, d],
            )?;
        }
        Ok(())
    }

    fn delete_person(&self, id: u64, version: u64) -> Result<(), ServiceError> {
        self.execute(
            "UPDATE users SET deleted = 1, disabled = 1, dir_version = ?2 WHERE id = ?1",
            params![id, version],
        )?;
        self.execute("UPDATE users SET manager_id = NULL WHERE manager_id = ?1", [id])?;
        self.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(())
    }

    fn search_people(&self, f: &PeopleFilter) -> Result<(Vec<Person>, u64), ServiceError> {
        let mut clauses = vec!["1 = 1".to_owned()];
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        clauses.push(
            match f.status {
                "active" => "u.disabled = 0 AND u.deleted = 0",
                "disabled" => "u.disabled = 1 AND u.deleted = 0",
                "deleted" => "u.deleted = 1",
                _ => "u.deleted = 0",
            }
            .into(),
        );
        if let Some(departments) = &f.departments {
            let ids = departments.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            clauses.push(format!(
                "(u.primary_department_id IN ({ids}) OR EXISTS (SELECT 1 FROM user_departments ud WHERE ud.user_id = u.id AND ud.department_id IN ({ids})))"
            ));
        }
        if let Some(text) = f.text.as_deref() {
            let lower = text.to_lowercase();
            let contains = format!("%{}%", like_escape(text));
            let prefix = format!("{}%", like_escape(&lower));
            clauses.push(
                "(u.display_name LIKE ? ESCAPE '\\' OR u.account LIKE ? ESCAPE '\\' OR u.pinyin LIKE ? ESCAPE '\\'
                  OR u.initials LIKE ? ESCAPE '\\' OR u.title LIKE ? ESCAPE '\\' OR u.employee_no = ?
                  OR u.primary_department_id IN (SELECT id FROM departments WHERE name LIKE ? ESCAPE '\\' AND deleted = 0))"
                    .into(),
            );
            for v in [&contains, &prefix, &prefix, &prefix, &contains] {
                args.push(v.clone().into());
            }
            args.push(text.to_owned().into());
            args.push(contains.clone().into());
        }
        let filter = clauses.join(" AND ");
        let total: u64 = self.query_row(
            &format!("SELECT count(*) FROM users u WHERE {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM users u WHERE {filter} ORDER BY u.pinyin, u.id LIMIT {} OFFSET {}",
            f.limit, f.offset
        );
        let mut stmt = self.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), person_from_row)?;
        Ok((rows.collect::<Result<_, _>>()?, total))
    }

    fn people_changed_after(&self, since: u64, limit: u32) -> Result<Vec<Person>, ServiceError> {
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM users u WHERE u.dir_version > ?1 ORDER BY u.dir_version LIMIT ?2"
        );
        let mut stmt = self.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![since, limit], person_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn departments_changed(&self, since: u64, until: u64) -> Result<Vec<DepartmentChange>, ServiceError> {
        let mut stmt = self.prepare_cached(
            "SELECT id, parent_id, name, sort_order, deleted, version FROM departments WHERE version > ?1 AND version <= ?2 ORDER BY version",
        )?;
        let rows = stmt.query_map(params![since, until], |r| {
            Ok(DepartmentChange {
                department: v1::Department {
                    id: r.get(0)?,
                    parent_id: r.get::<_, Option<u64>>(1)?.unwrap_or(0),
                    name: r.get(2)?,
                    sort_order: r.get(3)?,
                },
                deleted: r.get(4)?,
                version: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn account_names(&self) -> Result<HashMap<u64, String>, ServiceError> {
        let mut accounts: HashMap<u64, String> = HashMap::new();
        let mut stmt = self.prepare("SELECT id, account FROM users")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?)))? {
            let (id, account) = row?;
            accounts.insert(id, account);
        }
        Ok(accounts)
    }
}
