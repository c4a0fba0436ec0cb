//! What the directory stores: departments, people's directory fields, the
//! directory's version counter and epoch. The trait is the boundary; the
//! SQLite implementation is `storage/sqlite/directory.rs`.

use std::collections::HashMap;

use hutong_protocol::v1;
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Department {
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: String,
    pub sort_order: i64,
    pub hidden: bool,
    pub member_count: u64,
}

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

/// Which people a search counts and lists (already checked by the domain).
#[derive(Debug, Default)]
pub struct PeopleFilter {
    /// `active`, `disabled`, `deleted` or `all` (everyone not deleted).
    pub status: &'static str,
    /// People in any of these departments (primary or further), when set.
    pub departments: Option<Vec<u64>>,
    /// Name, account, pinyin, initials or title containing it (pinyin and
    /// initials: starting with it, lower case), the employee number equal to
    /// it, or the primary department's name containing it.
    pub text: Option<String>,
    pub offset: u64,
    pub limit: u64,
}

/// One department's change, for directory sync.
pub struct DepartmentChange {
    pub department: v1::Department,
    pub deleted: bool,
    pub version: u64,
}

/// The directory's rows. Writes run inside the caller's transaction.
pub trait DirectoryStore {
    /// Takes the next directory version (inside the caller's transaction).
    fn next_dir_version(&self) -> Result<u64, ServiceError>;
    /// Makes every client rebuild its directory copy (visibility may have changed).
    fn bump_dir_epoch(&self) -> Result<(), ServiceError>;
    fn dir_version(&self) -> Result<u64, ServiceError>;
    fn dir_epoch(&self) -> Result<u64, ServiceError>;
    /// Whether any live department is hidden (moves then change what people see).
    fn has_hidden_departments(&self) -> Result<bool, ServiceError>;
    /// `NotFound` unless `id` is a live department.
    fn department_exists(&self, id: u64) -> Result<(), ServiceError>;
    /// Ancestors of `id` (nearest first), to refuse moving a department under itself.
    fn department_ancestors(&self, id: u64) -> Result<Vec<u64>, ServiceError>;
    /// The department and all live departments below it.
    fn department_subtree(&self, root: u64) -> Result<Vec<u64>, ServiceError>;
    /// The live department named `name` directly under `parent` (the oldest).
    fn department_named(&self, parent: Option<u64>, name: &str) -> Result<Option<u64>, ServiceError>;
    /// Live departments (all, or one) with member counts, in tree order of siblings.
    fn departments(&self, id: Option<u64>) -> Result<Vec<Department>, ServiceError>;
    /// Every department, deleted ones included: (id, parent, hidden).
    fn department_tree(&self) -> Result<Vec<(u64, Option<u64>, bool)>, ServiceError>;
    /// A sort order after the last live sibling under `parent`.
    fn next_sort_order(&self, parent: Option<u64>) -> Result<i64, ServiceError>;
    fn insert_department(
        &self,
        parent: Option<u64>,
        name: &str,
        sort_order: i64,
        hidden: bool,
        version: u64,
    ) -> Result<u64, ServiceError>;
    fn update_department(&self, d: &Department, version: u64) -> Result<(), ServiceError>;
    fn live_child_departments(&self, id: u64) -> Result<u64, ServiceError>;
    fn delete_department(&self, id: u64, version: u64) -> Result<(), ServiceError>;
    fn person(&self, id: u64) -> Result<Option<Person>, ServiceError>;
    fn person_by_account(&self, account: &str) -> Result<Option<Person>, ServiceError>;
    /// A new person with only their login fields; `update_person` sets the rest.
    fn insert_person(
        &self,
        account: &str,
        display_name: &str,
        password_hash: &str,
        must_change: bool,
        created_at: i64,
    ) -> Result<u64, ServiceError>;
    /// Writes `p`'s directory fields (not its further departments), with its
    /// roles (comma-separated) and disabled state, at `version`.
    fn update_person(
        &self,
        p: &Person,
        roles: &str,
        disabled: bool,
        version: u64,
    ) -> Result<(), ServiceError>;
    /// Replaces a person's further departments.
    fn set_person_departments(&self, id: u64, departments: &[u64]) -> Result<(), ServiceError>;
    /// Marks a person deleted and disabled, clears them as anyone's manager
    /// and deletes their sessions.
    fn delete_person(&self, id: u64, version: u64) -> Result<(), ServiceError>;
    /// A page of the people matching, and how many match in all.
    fn search_people(&self, filter: &PeopleFilter) -> Result<(Vec<Person>, u64), ServiceError>;
    /// People changed after `since`, oldest change first, at most `limit`.
    fn people_changed_after(&self, since: u64, limit: u32) -> Result<Vec<Person>, ServiceError>;
    /// Departments changed after `since` and up to `until`, oldest first.
    fn departments_changed(&self, since: u64, until: u64) -> Result<Vec<DepartmentChange>, ServiceError>;
    /// Every person's account name by id, for an export.
    fn account_names(&self) -> Result<HashMap<u64, String>, ServiceError>;
}
