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
use serde::Deserialize;

use crate::error::ServiceError;
pub use crate::storage::directory::{Department, Person};
use crate::storage::directory::{DepartmentChange, PeopleFilter};
use crate::storage::Store;
pub use crate::util::pinyin_keys;

pub const ROLES: [&str; 5] = ["admin", "auditor", "agent", "publisher", "staff"];
const MAX_FIELD_CHARS: usize = 200;

// ------------------------------------------------------------------ departments

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
pub fn departments(store: &dyn Store) -> Result<Vec<Department>, ServiceError> {
    store.departments(None)
}

pub fn department(store: &dyn Store, id: u64) -> Result<Department, ServiceError> {
    store.departments(Some(id))?.pop().ok_or(ServiceError::NotFound("department"))
}

pub fn create_department(store: &dyn Store, input: &DepartmentInput) -> Result<u64, ServiceError> {
    let name = check_text("name", input.name.as_deref().unwrap_or(""), true)?;
    let parent = input.parent_id.flatten();
    if let Some(p) = parent {
        store.department_exists(p)?;
    }
    let sort_order = match input.sort_order {
        Some(s) => s,
        None => store.next_sort_order(parent)?,
    };
    let v = store.next_dir_version()?;
    let hidden = input.hidden.unwrap_or(false);
    let id = store.insert_department(parent, &name, sort_order, hidden, v)?;
    if hidden {
        store.bump_dir_epoch()?;
    }
    Ok(id)
}

pub fn update_department(store: &dyn Store, id: u64, input: &DepartmentInput) -> Result<(), ServiceError> {
    let current = department(store, id)?;
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
        store.department_exists(p)?;
        if store.department_ancestors(p)?.contains(&id) {
            return Err(ServiceError::BadRequest(
                "a department cannot move under one of its own sub-departments".into(),
            ));
        }
    }
    let hidden = input.hidden.unwrap_or(current.hidden);
    let v = store.next_dir_version()?;
    let updated = Department {
        name,
        parent_id: parent,
        sort_order: input.sort_order.unwrap_or(current.sort_order),
        hidden,
        ..current.clone()
    };
    store.update_department(&updated, v)?;
    if hidden != current.hidden || (parent != current.parent_id && store.has_hidden_departments()?) {
        store.bump_dir_epoch()?;
    }
    Ok(())
}

pub fn delete_department(store: &dyn Store, id: u64) -> Result<(), ServiceError> {
    let d = department(store, id)?;
    let children = store.live_child_departments(id)?;
    if children > 0 || d.member_count > 0 {
        return Err(ServiceError::Conflict(format!(
            "the department still has {children} sub-department(s) and {} member(s)",
            d.member_count
        )));
    }
    let v = store.next_dir_version()?;
    store.delete_department(id, v)
}

// ------------------------------------------------------------------ people

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

pub fn person(store: &dyn Store, id: u64) -> Result<Person, ServiceError> {
    store.person(id)?.ok_or(ServiceError::NotFound("person"))
}

pub fn person_by_account(store: &dyn Store, account: &str) -> Result<Option<Person>, ServiceError> {
    store.person_by_account(account)
}

fn check_roles(roles: &[String]) -> Result<String, ServiceError> {
    let mut out: Vec<&str> = Vec::new();
    for r in roles {
        let r = r.trim();
        if !ROLES.contains(&r) {
            return Err(ServiceError::BadRequest(format!(
                "unknown role {r:?}; roles are admin, auditor, agent, publisher, staff"
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
    store: &dyn Store,
    input: &PersonInput,
    password_hash: &str,
    must_change: bool,
) -> Result<u64, ServiceError> {
    let account = input.account.as_deref().unwrap_or("").trim().to_owned();
    crate::accounts::check_account_name(&account).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    if store.account_exists(&account)? {
        return Err(ServiceError::Conflict(format!("the account {account:?} already exists")));
    }
    let display = check_text("display_name", input.display_name.as_deref().unwrap_or(&account), false)?;
    let display = if display.is_empty() { account.clone() } else { display };
    let id = store.insert_person(&account, &display, password_hash, must_change, crate::storage::now_ms())?;
    update_person(store, id, &PersonInput { account: None, password: None, ..input.clone() })?;
    Ok(id)
}

/// Applies the given fields. Returns true when the person was disabled now
/// (the caller closes their sessions).
pub fn update_person(store: &dyn Store, id: u64, input: &PersonInput) -> Result<bool, ServiceError> {
    let mut p = person(store, id)?;
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
            store.department_exists(d)?;
        }
        p.primary_department_id = v;
    }
    if let Some(list) = &input.department_ids {
        let mut ids: Vec<u64> =
            list.iter().copied().filter(|d| Some(*d) != p.primary_department_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for d in &ids {
            store.department_exists(*d)?;
        }
        p.department_ids = ids;
    }
    if let Some(m) = input.manager_id {
        if m == Some(id) {
            return Err(ServiceError::BadRequest("a person cannot be their own manager".into()));
        }
        if let Some(m) = m {
            person(store, m)?;
        }
        p.manager_id = m;
    }
    let roles = match &input.roles {
        Some(r) => check_roles(r)?,
        None => p.roles.join(","),
    };
    let was_disabled = p.status == "disabled";
    let disabled = input.disabled.unwrap_or(was_disabled);
    (p.pinyin, p.initials) = pinyin_keys(&p.display_name);
    let v = store.next_dir_version()?;
    store.update_person(&p, &roles, disabled, v)?;
    if (p.primary_department_id, p.department_ids.clone()) != old_departments {
        store.set_person_departments(id, &p.department_ids)?;
        if store.has_hidden_departments()? {
            store.bump_dir_epoch()?;
        }
    }
    Ok(disabled && !was_disabled)
}

/// Removes a person from the directory and from login; their messages stay
/// in the archive for audit.
pub fn delete_person(store: &dyn Store, id: u64) -> Result<(), ServiceError> {
    let p = person(store, id)?;
    if p.status == "deleted" {
        return Err(ServiceError::NotFound("person"));
    }
    let v = store.next_dir_version()?;
    store.delete_person(id, v)
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

pub fn search_people(store: &dyn Store, q: &PeopleQuery) -> Result<(Vec<Person>, u64), ServiceError> {
    let status = match q.status.as_deref().unwrap_or("all") {
        "active" => "active",
        "disabled" => "disabled",
        "deleted" => "deleted",
        "all" => "all",
        other => return Err(ServiceError::BadRequest(format!("unknown status {other:?}"))),
    };
    let departments = match q.department_id {
        Some(d) => Some(store.department_subtree(d)?),
        None => None,
    };
    let filter = PeopleFilter {
        status,
        departments,
        text: q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned),
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    store.search_people(&filter)
}

// ------------------------------------------------------------------ visibility and sync

/// What one viewer may see of the tree.
pub struct Visibility {
    /// Departments hidden from this viewer (hidden ones they are outside of, and everything below).
    invisible: HashSet<u64>,
}

impl Visibility {
    pub fn for_viewer(store: &dyn Store, viewer: u64) -> Result<Visibility, ServiceError> {
        let tree: HashMap<u64, (Option<u64>, bool)> =
            store.department_tree()?.into_iter().map(|(id, parent, hidden)| (id, (parent, hidden))).collect();
        if !tree.values().any(|(_, hidden)| *hidden) {
            return Ok(Visibility { invisible: HashSet::new() });
        }
        let me = person(store, viewer)?;
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
pub fn knowable(store: &dyn Store, viewer: u64, ids: &[u64]) -> Result<HashSet<u64>, ServiceError> {
    let visibility = Visibility::for_viewer(store, viewer)?;
    let mut known = HashSet::with_capacity(ids.len());
    for &id in ids {
        if id == viewer {
            known.insert(id);
            continue;
        }
        let p = match person(store, id) {
            Ok(p) => p,
            Err(ServiceError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let listed = p.status != "deleted" && visibility.person(viewer, p).is_some();
        if listed || store.share_a_conversation(viewer, id)? {
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
    store: &dyn Store,
    viewer: u64,
    since: u64,
    epoch: u64,
    limit: u32,
) -> Result<v1::DirectoryDelta, ServiceError> {
    let current_epoch = store.dir_epoch()?;
    let reset = epoch != current_epoch;
    let since = if reset { 0 } else { since };
    let limit = limit.clamp(1, SYNC_PAGE);
    let visibility = Visibility::for_viewer(store, viewer)?;
    let mut delta = v1::DirectoryDelta { reset, epoch: current_epoch, version: since, ..Default::default() };

    // People, a page at a time in version order.
    let people = store.people_changed_after(since, limit + 1)?;
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
    for change in store.departments_changed(since, page_top)? {
        let DepartmentChange { department: d, deleted, version } = change;
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
        let current = store.dir_version()?;
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
