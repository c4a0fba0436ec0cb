//! The company directory: departments (a tree of any depth with ordered
//! siblings), people's directory fields and roles, search (Chinese names by
//! characters, full pinyin and initials), per-viewer visibility of hidden
//! departments, and the incremental directory sync clients use.
//!
//! Every change takes a new value of the directory version counter; clients
//! ask for what changed after the version they hold. Changes that can alter
//! what someone may *see* (hiding a department, moving one, moving people
//! while hidden departments exist) bump the directory epoch instead, which
//! makes every client start its copy afresh, so nothing hidden lingers.

pub mod import;

use std::collections::{HashMap, HashSet};

use hutong_protocol::v1;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;
use crate::storage::sqlite::directory::{
    ancestors, bump_epoch, department_exists, has_hidden, next_version, subtree,
};
use crate::storage::sqlite::{like_escape, setting};
pub use crate::util::pinyin_keys;

pub const ROLES: [&str; 4] = ["admin", "auditor", "agent", "staff"];
const MAX_FIELD_CHARS: usize = 200;

// ------------------------------------------------------------------ departments

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Department {
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: String,
    pub sort_order: i64,
    pub hidden: bool,
    pub member_count: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentInput {
    pub name: Option<String>,
    #[serde(default, with = "double_option")]
    pub parent_id: Option<Option<u64>>,
    pub sort_order: Option<i64>,
    pub hidden: Option<bool>,
}

/// Distinguishes "absent" (keep) from `null` (clear) in a PATCH body.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

fn check_text(field: &str, value: &str, required: bool) -> Result<String, ServiceError> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(ServiceError::BadRequest(format!("{field} is required")));
    }
    if v.chars().count() > MAX_FIELD_CHARS {
        return Err(ServiceError::BadRequest(format!("{field} has at most {MAX_FIELD_CHARS} characters")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ServiceError::BadRequest(format!("{field} contains control characters")));
    }
    Ok(v.to_owned())
}

/// All live departments with member counts, in tree order of siblings.
pub fn departments(conn: &Connection) -> Result<Vec<Department>, ServiceError> {
    departments_matching(conn, None)
}

pub fn department(conn: &Connection, id: u64) -> Result<Department, ServiceError> {
    departments_matching(conn, Some(id))?.pop().ok_or(ServiceError::NotFound("department"))
}

/// Live departments (all, or one) with member counts. The two counts use
/// the indexes on primary and further departments, not a scan of everyone.
fn departments_matching(conn: &Connection, id: Option<u64>) -> Result<Vec<Department>, ServiceError> {
    let mut stmt = conn.prepare_cached(
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

pub fn create_department(conn: &Connection, input: &DepartmentInput) -> Result<u64, ServiceError> {
    let name = check_text("name", input.name.as_deref().unwrap_or(""), true)?;
    let parent = input.parent_id.flatten();
    if let Some(p) = parent {
        department_exists(conn, p)?;
    }
    let sort_order = match input.sort_order {
        Some(s) => s,
        None => conn.query_row(
            "SELECT coalesce(max(sort_order), 0) + 10 FROM departments WHERE parent_id IS ?1 AND deleted = 0",
            [parent],
            |r| r.get(0),
        )?,
    };
    let v = next_version(conn)?;
    conn.execute(
        "INSERT INTO departments (parent_id, name, sort_order, hidden, version) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![parent, name, sort_order, input.hidden.unwrap_or(false), v],
    )?;
    if input.hidden.unwrap_or(false) {
        bump_epoch(conn)?;
    }
    Ok(conn.last_insert_rowid() as u64)
}

pub fn update_department(conn: &Connection, id: u64, input: &DepartmentInput) -> Result<(), ServiceError> {
    let current = department(conn, id)?;
    let name = match &input.name {
        Some(n) => check_text("name", n, true)?,
        None => current.name.clone(),
    };
    let parent = match input.parent_id {
        Some(p) => p,
        None => current.parent_id,
    };
    if let Some(p) = parent {
        if p == id {
            return Err(ServiceError::BadRequest("a department cannot be its own parent".into()));
        }
        department_exists(conn, p)?;
        if ancestors(conn, p)?.contains(&id) {
            return Err(ServiceError::BadRequest(
                "a department cannot move under one of its own sub-departments".into(),
            ));
        }
    }
    let hidden = input.hidden.unwrap_or(current.hidden);
    let v = next_version(conn)?;
    conn.execute(
        "UPDATE departments SET name = ?2, parent_id = ?3, sort_order = ?4, hidden = ?5, version = ?6 WHERE id = ?1",
        params![id, name, parent, input.sort_order.unwrap_or(current.sort_order), hidden, v],
    )?;
    if hidden != current.hidden || (parent != current.parent_id && has_hidden(conn)?) {
        bump_epoch(conn)?;
    }
    Ok(())
}

pub fn delete_department(conn: &Connection, id: u64) -> Result<(), ServiceError> {
    let d = department(conn, id)?;
    let children: u64 =
        conn.query_row("SELECT count(*) FROM departments WHERE parent_id = ?1 AND deleted = 0", [id], |r| {
            r.get(0)
        })?;
    if children > 0 || d.member_count > 0 {
        return Err(ServiceError::Conflict(format!(
            "the department still has {children} sub-department(s) and {} member(s)",
            d.member_count
        )));
    }
    let v = next_version(conn)?;
    conn.execute("UPDATE departments SET deleted = 1, version = ?2 WHERE id = ?1", params![id, v])?;
    Ok(())
}

// ------------------------------------------------------------------ people

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Person {
    pub id: u64,
    pub account: String,
    pub display_name: String,
    pub employee_no: String,
    pub title: String,
    pub phone: String,
    pub email: String,
    pub avatar: String,
    pub primary_department_id: Option<u64>,
    pub department_ids: Vec<u64>,
    pub manager_id: Option<u64>,
    pub status: &'static str,
    pub roles: Vec<String>,
    pub online: bool,
    #[serde(skip)]
    pub pinyin: String,
    #[serde(skip)]
    pub initials: String,
    #[serde(skip)]
    pub version: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub account: Option<String>,
    pub display_name: Option<String>,
    pub password: Option<String>,
    pub employee_no: Option<String>,
    pub title: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    #[serde(default, with = "double_option")]
    pub primary_department_id: Option<Option<u64>>,
    pub department_ids: Option<Vec<u64>>,
    #[serde(default, with = "double_option")]
    pub manager_id: Option<Option<u64>>,
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

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

pub fn person(conn: &Connection, id: u64) -> Result<Person, ServiceError> {
    let sql = format!("SELECT {PERSON_COLUMNS} FROM users u WHERE u.id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], person_from_row)
        .optional()?
        .ok_or(ServiceError::NotFound("person"))
}

pub fn person_by_account(conn: &Connection, account: &str) -> Result<Option<Person>, ServiceError> {
    let sql = format!("SELECT {PERSON_COLUMNS} FROM users u WHERE u.account = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([account], person_from_row).optional()?)
}

fn check_roles(roles: &[String]) -> Result<String, ServiceError> {
    let mut out: Vec<&str> = Vec::new();
    for r in roles {
        let r = r.trim();
        if !ROLES.contains(&r) {
            return Err(ServiceError::BadRequest(format!(
                "unknown role {r:?}; roles are admin, auditor, agent, staff"
            )));
        }
        if r != "staff" && !out.contains(&r) {
            out.push(r);
        }
    }
    out.sort_unstable();
    Ok(out.join(","))
}

fn check_email(email: &str) -> Result<String, ServiceError> {
    let e = check_text("email", email, false)?;
    if !e.is_empty() && (!e.contains('@') || e.contains(' ')) {
        return Err(ServiceError::BadRequest(format!("{e:?} is not an email address")));
    }
    Ok(e)
}

/// Creates a person. `password_hash` is the Argon2id hash of the first password.
pub fn create_person(
    conn: &Connection,
    input: &PersonInput,
    password_hash: &str,
    must_change: bool,
) -> Result<u64, ServiceError> {
    let account = input.account.as_deref().unwrap_or("").trim().to_owned();
    crate::accounts::check_account_name(&account).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let exists: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM users WHERE account = ?1)", [&account], |r| r.get(0))?;
    if exists {
        return Err(ServiceError::Conflict(format!("the account {account:?} already exists")));
    }
    let display = check_text("display_name", input.display_name.as_deref().unwrap_or(&account), false)?;
    let display = if display.is_empty() { account.clone() } else { display };
    conn.execute(
        "INSERT INTO users (account, display_name, password_hash, must_change_password, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![account, display, password_hash, must_change, crate::storage::now_ms()],
    )?;
    let id = conn.last_insert_rowid() as u64;
    update_person(conn, id, &PersonInput { account: None, password: None, ..input.clone() })?;
    Ok(id)
}

/// Applies the given fields. Returns true when the person was disabled now
/// (the caller closes their sessions).
pub fn update_person(conn: &Connection, id: u64, input: &PersonInput) -> Result<bool, ServiceError> {
    let mut p = person(conn, id)?;
    if p.status == "deleted" {
        return Err(ServiceError::NotFound("person"));
    }
    if input.account.as_deref().is_some_and(|a| a != p.account) {
        return Err(ServiceError::BadRequest("an account name cannot change".into()));
    }
    if let Some(v) = &input.display_name {
        p.display_name = check_text("display_name", v, true)?;
    }
    if let Some(v) = &input.employee_no {
        p.employee_no = check_text("employee_no", v, false)?;
    }
    if let Some(v) = &input.title {
        p.title = check_text("title", v, false)?;
    }
    if let Some(v) = &input.phone {
        p.phone = check_text("phone", v, false)?;
    }
    if let Some(v) = &input.email {
        p.email = check_email(v)?;
    }
    if let Some(v) = &input.avatar {
        p.avatar = check_text("avatar", v, false)?;
    }
    let old_departments: (Option<u64>, Vec<u64>) = (p.primary_department_id, p.department_ids.clone());
    if let Some(v) = input.primary_department_id {
        if let Some(d) = v {
            department_exists(conn, d)?;
        }
        p.primary_department_id = v;
    }
    if let Some(list) = &input.department_ids {
        let mut ids: Vec<u64> =
            list.iter().copied().filter(|d| Some(*d) != p.primary_department_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for d in &ids {
            department_exists(conn, *d)?;
        }
        p.department_ids = ids;
    }
    if let Some(m) = input.manager_id {
        if m == Some(id) {
            return Err(ServiceError::BadRequest("a person cannot be their own manager".into()));
        }
        if let Some(m) = m {
            person(conn, m)?;
        }
        p.manager_id = m;
    }
    let roles = match &input.roles {
        Some(r) => check_roles(r)?,
        None => p.roles.join(","),
    };
    let was_disabled = p.status == "disabled";
    let disabled = input.disabled.unwrap_or(was_disabled);
    let (pinyin, initials) = pinyin_keys(&p.display_name);
    let v = next_version(conn)?;
    conn.execute(
        "UPDATE users SET display_name = ?2, employee_no = ?3, title = ?4, phone = ?5, email = ?6, avatar = ?7,
            primary_department_id = ?8, manager_id = ?9, roles = ?10, disabled = ?11, pinyin = ?12, initials = ?13,
            dir_version = ?14, is_admin = ?15
         WHERE id = ?1",
        params![
            id,
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
            pinyin,
            initials,
            v,
            roles.split(',').any(|r| r == "admin")
        ],
    )?;
    if (p.primary_department_id, p.department_ids.clone()) != old_departments {
        conn.execute("DELETE FROM user_departments WHERE user_id = ?1", [id])?;
        for d in &p.department_ids {
            conn.execute(
                "INSERT INTO user_departments (user_id, department_id) VALUES (?1, ?2)",
                params![id, d],
            )?;
        }
        if has_hidden(conn)? {
            bump_epoch(conn)?;
        }
    }
    Ok(disabled && !was_disabled)
}

/// Removes a person from the directory and from login; their messages stay
/// in the archive for audit.
pub fn delete_person(conn: &Connection, id: u64) -> Result<(), ServiceError> {
    let p = person(conn, id)?;
    if p.status == "deleted" {
        return Err(ServiceError::NotFound("person"));
    }
    let v = next_version(conn)?;
    conn.execute(
        "UPDATE users SET deleted = 1, disabled = 1, dir_version = ?2 WHERE id = ?1",
        params![id, v],
    )?;
    conn.execute("UPDATE users SET manager_id = NULL WHERE manager_id = ?1", [id])?;
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    Ok(())
}

/// What an admin search asks for.
#[derive(Debug, Default, Deserialize)]
pub struct PeopleQuery {
    pub department_id: Option<u64>,
    pub q: Option<String>,
    pub status: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

pub fn search_people(conn: &Connection, q: &PeopleQuery) -> Result<(Vec<Person>, u64), ServiceError> {
    let mut clauses = vec!["1 = 1".to_owned()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    match q.status.as_deref().unwrap_or("all") {
        "active" => clauses.push("u.disabled = 0 AND u.deleted = 0".into()),
        "disabled" => clauses.push("u.disabled = 1 AND u.deleted = 0".into()),
        "deleted" => clauses.push("u.deleted = 1".into()),
        "all" => clauses.push("u.deleted = 0".into()),
        other => return Err(ServiceError::BadRequest(format!("unknown status {other:?}"))),
    }
    if let Some(d) = q.department_id {
        let ids = subtree(conn, d)?.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        clauses.push(format!(
            "(u.primary_department_id IN ({ids}) OR EXISTS (SELECT 1 FROM user_departments ud WHERE ud.user_id = u.id AND ud.department_id IN ({ids})))"
        ));
    }
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
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
    let total: u64 = conn.query_row(
        &format!("SELECT count(*) FROM users u WHERE {filter}"),
        rusqlite::params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM users u WHERE {filter} ORDER BY u.pinyin, u.id LIMIT {limit} OFFSET {}",
        q.offset.unwrap_or(0)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), person_from_row)?;
    Ok((rows.collect::<Result<_, _>>()?, total))
}

// ------------------------------------------------------------------ visibility and sync

/// What one viewer may see of the tree.
pub struct Visibility {
    /// Departments hidden from this viewer (hidden ones they are outside of, and everything below).
    invisible: HashSet<u64>,
}

impl Visibility {
    pub fn for_viewer(conn: &Connection, viewer: u64) -> Result<Visibility, ServiceError> {
        let mut stmt = conn.prepare_cached("SELECT id, parent_id, hidden FROM departments")?;
        let tree: HashMap<u64, (Option<u64>, bool)> = stmt
            .query_map([], |r| {
                Ok((r.get::<_, u64>(0)?, (r.get::<_, Option<u64>>(1)?, r.get::<_, bool>(2)?)))
            })?
            .collect::<Result<_, _>>()?;
        if !tree.values().any(|(_, hidden)| *hidden) {
            return Ok(Visibility { invisible: HashSet::new() });
        }
        let me = person(conn, viewer)?;
        // Every department the viewer is in, and their ancestors: the viewer is "inside" these.
        let mut inside = HashSet::new();
        for d in me.primary_department_id.into_iter().chain(me.department_ids.iter().copied()) {
            let mut cur = Some(d);
            while let Some(c) = cur {
                if !inside.insert(c) {
                    break;
                }
                cur = tree.get(&c).and_then(|(p, _)| *p);
            }
        }
        let mut invisible = HashSet::new();
        for &id in tree.keys() {
            let mut cur = Some(id);
            let mut steps = 0;
            while let Some(c) = cur {
                let Some((parent, hidden)) = tree.get(&c) else { break };
                if *hidden && !inside.contains(&c) {
                    invisible.insert(id);
                    break;
                }
                cur = *parent;
                steps += 1;
                if steps > tree.len() {
                    break;
                }
            }
        }
        Ok(Visibility { invisible })
    }

    pub fn department(&self, id: u64) -> bool {
        !self.invisible.contains(&id)
    }

    /// A person is visible with at least one visible department, or with none at all.
    /// Returns the person as this viewer may see them.
    pub fn person(&self, viewer: u64, mut p: Person) -> Option<Person> {
        if self.invisible.is_empty() || p.id == viewer {
            return Some(p);
        }
        let all: Vec<u64> =
            p.primary_department_id.into_iter().chain(p.department_ids.iter().copied()).collect();
        if !all.is_empty() && all.iter().all(|d| self.invisible.contains(d)) {
            return None;
        }
        if p.primary_department_id.is_some_and(|d| self.invisible.contains(&d)) {
            p.primary_department_id = None;
        }
        p.department_ids.retain(|d| !self.invisible.contains(d));
        Some(p)
    }
}

/// Which of `ids` `viewer` may know of: people the directory shows them
/// (not deleted, in at least one department visible to them), themselves,
/// and anyone they share a conversation with (whose messages they see
/// anyway). Everyone else, whether hidden, deleted or never created, gets
/// the answer an unknown id gets from every request that names people.
pub fn knowable(conn: &Connection, viewer: u64, ids: &[u64]) -> Result<HashSet<u64>, ServiceError> {
    let visibility = Visibility::for_viewer(conn, viewer)?;
    let mut known = HashSet::with_capacity(ids.len());
    for &id in ids {
        if id == viewer {
            known.insert(id);
            continue;
        }
        let p = match person(conn, id) {
            Ok(p) => p,
            Err(ServiceError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let listed = p.status != "deleted" && visibility.person(viewer, p).is_some();
        if listed || crate::storage::sqlite::directory::share_a_conversation(conn, viewer, id)? {
            known.insert(id);
        }
    }
    Ok(known)
}

fn wire_person(p: &Person) -> v1::Person {
    v1::Person {
        id: p.id,
        account: p.account.clone(),
        display_name: p.display_name.clone(),
        employee_no: p.employee_no.clone(),
        title: p.title.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
        avatar: p.avatar.clone(),
        primary_department_id: p.primary_department_id.unwrap_or(0),
        department_ids: p.department_ids.clone(),
        manager_id: p.manager_id.unwrap_or(0),
        disabled: p.status != "active",
        roles: p.roles.clone(),
        pinyin: p.pinyin.clone(),
        pinyin_initials: p.initials.clone(),
    }
}

/// People per directory answer: keeps answers well under the frame limit.
const SYNC_PAGE: u32 = 1000;

/// What changed in the directory since `since` as `viewer` may see it. A
/// client whose epoch differs gets everything afresh (`reset`).
pub fn sync(
    conn: &Connection,
    viewer: u64,
    since: u64,
    epoch: u64,
    limit: u32,
) -> Result<v1::DirectoryDelta, ServiceError> {
    let current_epoch: u64 = setting(conn, "dir_epoch")?.parse().unwrap_or(1);
    let reset = epoch != current_epoch;
    let since = if reset { 0 } else { since };
    let limit = limit.clamp(1, SYNC_PAGE);
    let visibility = Visibility::for_viewer(conn, viewer)?;
    let mut delta = v1::DirectoryDelta { reset, epoch: current_epoch, version: since, ..Default::default() };

    // People, a page at a time in version order.
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM users u WHERE u.dir_version > ?1 ORDER BY u.dir_version LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let people: Vec<Person> =
        stmt.query_map(params![since, limit + 1], person_from_row)?.collect::<Result<_, _>>()?;
    delta.more = people.len() > limit as usize;
    let page_top = if delta.more { people[limit as usize - 1].version } else { i64::MAX as u64 };
    for p in people.into_iter().take(limit as usize) {
        delta.version = delta.version.max(p.version);
        let id = p.id;
        match visibility.person(viewer, p) {
            Some(p) if p.status != "deleted" => delta.people.push(wire_person(&p)),
            // Deleted, or not visible: the client must not keep it.
            _ if !reset => delta.removed_people.push(id),
            _ => {}
        }
    }
    // Departments changed up to the same version (there are few).
    let mut stmt = conn.prepare_cached(
        "SELECT id, parent_id, name, sort_order, deleted, version FROM departments WHERE version > ?1 AND version <= ?2 ORDER BY version",
    )?;
    let rows = stmt.query_map(params![since, page_top], |r| {
        Ok((
            v1::Department {
                id: r.get(0)?,
                parent_id: r.get::<_, Option<u64>>(1)?.unwrap_or(0),
                name: r.get(2)?,
                sort_order: r.get(3)?,
            },
            r.get::<_, bool>(4)?,
            r.get::<_, u64>(5)?,
        ))
    })?;
    for row in rows {
        let (d, deleted, version) = row?;
        delta.version = delta.version.max(version);
        if !visibility.department(d.id) {
            continue;
        }
        if deleted {
            if !reset {
                delta.removed_departments.push(d.id);
            }
        } else {
            delta.departments.push(d);
        }
    }
    if !delta.more {
        // Nothing left below the current version: hand it out so the next sync starts there.
        let current: u64 = setting(conn, "dir_version")?.parse().unwrap_or(0);
        delta.version = delta.version.max(current);
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinyin_of_chinese_names() {
        assert_eq!(pinyin_keys("张三"), ("zhangsan".into(), "zs".into()));
        assert_eq!(pinyin_keys("李Lei 2"), ("lilei2".into(), "llei2".into()));
    }
}
