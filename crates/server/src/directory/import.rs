//! Bulk import and export of people as CSV, the way spreadsheets write it:
//! UTF-8 with or without a byte-order mark, or GBK (Excel on a Chinese
//! Windows). An import is all or nothing: every row is checked first, and a
//! single bad row imports nothing; the answer names each bad row, column and
//! reason. Headers may be English or Chinese.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::directory::{self, DepartmentInput, PersonInput};
use crate::error::ServiceError;
use crate::storage::Store;

/// Largest file accepted, in bytes.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
/// Most rows accepted in one file.
pub const MAX_IMPORT_ROWS: usize = 200_000;

const COLUMNS: [(&str, &str); 11] = [
    ("account", "账号"),
    ("display_name", "姓名"),
    ("employee_no", "工号"),
    ("title", "职务"),
    ("phone", "手机"),
    ("email", "邮箱"),
    ("department", "部门"),
    ("other_departments", "其他部门"),
    ("manager", "上级"),
    ("roles", "角色"),
    ("password", "密码"),
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    /// Line in the file; the header is line 1.
    pub row: u64,
    pub column: String,
    pub reason: String,
}

#[derive(Debug)]
pub enum ImportError {
    Invalid(Vec<RowError>),
    Service(ServiceError),
}

impl From<ServiceError> for ImportError {
    fn from(e: ServiceError) -> Self {
        ImportError::Service(e)
    }
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: u64,
    pub updated: u64,
    pub departments_created: u64,
}

/// Text of a spreadsheet file: UTF-8 (a BOM is dropped), else GBK.
pub fn decode(bytes: &[u8]) -> Result<String, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_owned());
    }
    let (text, _, had_errors) = encoding_rs::GBK.decode(bytes);
    if had_errors {
        return Err(ImportError::Invalid(vec![RowError {
            row: 0,
            column: String::new(),
            reason: "the file is neither UTF-8 nor GBK text".into(),
        }]));
    }
    Ok(text.into_owned())
}

struct Row {
    line: u64,
    fields: HashMap<&'static str, String>,
}

impl Row {
    fn get(&self, column: &str) -> &str {
        self.fields.get(column).map(String::as_str).unwrap_or("").trim()
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([';', '；']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

fn split_path(s: &str) -> Vec<String> {
    s.split('/').map(str::trim).map(str::to_owned).collect()
}

fn parse(text: &str) -> Result<Vec<Row>, ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| single(1, "", &format!("unreadable header: {e}")))?.clone();
    let mut index: HashMap<usize, &'static str> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim();
        match COLUMNS.iter().find(|(en, zh)| h.eq_ignore_ascii_case(en) || h == *zh) {
            Some((en, _)) => {
                index.insert(i, en);
            }
            None => return Err(single(1, h, "unknown column")),
        }
    }
    for required in ["account", "display_name"] {
        if !index.values().any(|c| *c == required) {
            return Err(single(1, required, "this column is required"));
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| single(line, "", &format!("unreadable row: {e}")))?;
        if rows.len() >= MAX_IMPORT_ROWS {
            return Err(single(line, "", &format!("a file holds at most {MAX_IMPORT_ROWS} rows")));
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let fields = record
            .iter()
            .enumerate()
            .filter_map(|(i, v)| index.get(&i).map(|c| (*c, crate::util::csv_cell_restore(v).to_owned())))
            .collect();
        rows.push(Row { line, fields });
    }
    Ok(rows)
}

fn single(row: u64, column: &str, reason: &str) -> ImportError {
    ImportError::Invalid(vec![RowError { row, column: column.into(), reason: reason.into() }])
}

/// Reads an import file as [`import`] does before it looks at the
/// database (size, encoding, header and rows) and returns how many rows it
/// holds. For checking untrusted files (the fuzz target) without a database.
pub fn read_file(bytes: &[u8]) -> Result<usize, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::Service(ServiceError::TooLarge("an import file is too large".into())));
    }
    Ok(parse(&decode(bytes)?)?.len())
}

/// Checks every row and, only if all are good, applies them in the caller's
/// transaction. `initial_password_hash` is given to new people without a
/// password of their own (they must change it at first login); without it,
/// such people cannot log in until an administrator resets their password.
pub fn import(
    conn: &dyn Store,
    bytes: &[u8],
    initial_password_hash: Option<&str>,
) -> Result<ImportSummary, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::Service(ServiceError::TooLarge(format!(
            "an import file has at most {} MiB",
            MAX_IMPORT_BYTES / 1024 / 1024
        ))));
    }
    let rows = parse(&decode(bytes)?)?;
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        let mut err = |column: &str, reason: String| {
            errors.push(RowError { row: row.line, column: column.into(), reason })
        };
        let account = row.get("account");
        if let Err(e) = crate::accounts::check_account_name(account) {
            err("account", e.to_string());
        } else if let Some(first) = seen.insert(account.to_lowercase(), row.line) {
            err("account", format!("the account {account:?} also appears on line {first}"));
        }
        if row.get("display_name").is_empty() {
            err("display_name", "a name is required".into());
        }
        for column in ["display_name", "employee_no", "title", "phone", "email"] {
            let v = row.get(column);
            if v.chars().count() > 200 || v.chars().any(char::is_control) {
                err(column, "too long or contains control characters".into());
            }
        }
        let email = row.get("email");
        if !email.is_empty() && (!email.contains('@') || email.contains(' ')) {
            err("email", format!("{email:?} is not an email address"));
        }
        for role in split_list(row.get("roles")) {
            if !directory::ROLES.contains(&role.as_str()) {
                err("roles", format!("unknown role {role:?}; roles are admin, auditor, agent, staff"));
            }
        }
        for (column, paths) in [
            ("department", vec![row.get("department").to_owned()]),
            ("other_departments", split_list(row.get("other_departments"))),
        ] {
            for path in paths.iter().filter(|p| !p.is_empty()) {
                if split_path(path).iter().any(|seg| seg.is_empty() || seg.chars().count() > 100) {
                    err(column, format!("{path:?} is not a department path such as 总部/研发部"));
                }
            }
        }
        let password = row.get("password");
        if !password.is_empty() {
            if let Err(e) = crate::accounts::check_password_policy(password) {
                err("password", e.to_string());
            }
        }
    }
    // Managers must exist in the file or already.
    for row in &rows {
        let manager = row.get("manager");
        if manager.is_empty() {
            continue;
        }
        if manager.eq_ignore_ascii_case(row.get("account")) {
            errors.push(RowError {
                row: row.line,
                column: "manager".into(),
                reason: "a person cannot be their own manager".into(),
            });
        } else if !seen.contains_key(&manager.to_lowercase())
            && directory::person_by_account(conn, manager)?.is_none()
        {
            errors.push(RowError {
                row: row.line,
                column: "manager".into(),
                reason: format!("no account {manager:?} in the file or the directory"),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Err(ImportError::Invalid(errors));
    }

    let mut summary = ImportSummary::default();
    let mut paths: HashMap<String, u64> = HashMap::new();
    let mut ensure_path = |conn: &dyn Store,
                           path: &str,
                           summary: &mut ImportSummary|
     -> Result<Option<u64>, ImportError> {
        if path.is_empty() {
            return Ok(None);
        }
        if let Some(id) = paths.get(path) {
            return Ok(Some(*id));
        }
        let mut parent: Option<u64> = None;
        for seg in split_path(path) {
            let existing = conn.department_named(parent, &seg)?;
            parent = Some(match existing {
                Some(id) => id,
                None => {
                    summary.departments_created += 1;
                    directory::create_department(
                        conn,
                        &DepartmentInput { name: Some(seg), parent_id: Some(parent), ..Default::default() },
                    )?
                }
            });
        }
        paths.insert(path.to_owned(), parent.expect("a path has a segment"));
        Ok(parent)
    };
    let mut ids: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        let primary = ensure_path(conn, row.get("department"), &mut summary)?;
        let mut further = Vec::new();
        for p in split_list(row.get("other_departments")) {
            further.extend(ensure_path(conn, &p, &mut summary)?);
        }
        let input = PersonInput {
            display_name: Some(row.get("display_name").to_owned()),
            employee_no: Some(row.get("employee_no").to_owned()),
            title: Some(row.get("title").to_owned()),
            phone: Some(row.get("phone").to_owned()),
            email: Some(row.get("email").to_owned()),
            primary_department_id: Some(primary),
            department_ids: Some(further),
            roles: Some(split_list(row.get("roles"))),
            ..Default::default()
        };
        let account = row.get("account");
        let id = match directory::person_by_account(conn, account)? {
            Some(existing) if existing.status != "deleted" => {
                directory::update_person(conn, existing.id, &input)?;
                summary.updated += 1;
                existing.id
            }
            Some(_) => {
                return Err(single(
                    row.line,
                    "account",
                    &format!("the account {account:?} was deleted and cannot be reused"),
                ))
            }
            None => {
                let own = row.get("password");
                let (hash, must_change) = if !own.is_empty() {
                    (
                        crate::accounts::hash_password(own)
                            .map_err(|e| ServiceError::Internal(e.to_string()))?,
                        false,
                    )
                } else {
                    (initial_password_hash.unwrap_or(crate::accounts::NO_PASSWORD).to_owned(), true)
                };
                let input = PersonInput { account: Some(account.to_owned()), ..input };
                summary.created += 1;
                directory::create_person(conn, &input, &hash, must_change)?
            }
        };
        ids.insert(account.to_lowercase(), id);
    }
    for row in &rows {
        let manager = row.get("manager");
        let manager_id = if manager.is_empty() {
            None
        } else {
            match ids.get(&manager.to_lowercase()) {
                Some(id) => Some(*id),
                None => directory::person_by_account(conn, manager)?.map(|p| p.id),
            }
        };
        let id = ids[&row.get("account").to_lowercase()];
        directory::update_person(
            conn,
            id,
            &PersonInput { manager_id: Some(manager_id), ..Default::default() },
        )?;
    }
    Ok(summary)
}

/// Everyone (not deleted) as CSV, UTF-8 with a BOM so Excel shows Chinese correctly.
pub fn export(conn: &dyn Store) -> Result<Vec<u8>, ServiceError> {
    let departments = directory::departments(conn)?;
    let by_id: HashMap<u64, &directory::Department> = departments.iter().map(|d| (d.id, d)).collect();
    let path = |id: u64| -> String {
        let mut parts = Vec::new();
        let mut seen = HashSet::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            let Some(d) = by_id.get(&c) else { break };
            if !seen.insert(c) {
                break;
            }
            parts.push(d.name.clone());
            cur = d.parent_id;
        }
        parts.reverse();
        parts.join("/")
    };
    let accounts = conn.account_names()?;
    let mut out = b"\xEF\xBB\xBF".to_vec();
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = COLUMNS.iter().map(|(en, _)| *en).filter(|c| *c != "password").collect();
    w.write_record(&header).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut offset = 0;
    loop {
        let query = directory::PeopleQuery {
            status: Some("all".into()),
            offset: Some(offset),
            limit: Some(1000),
            ..Default::default()
        };
        let (people, _) = directory::search_people(conn, &query)?;
        if people.is_empty() {
            break;
        }
        offset += people.len() as u64;
        for p in people {
            let record = [
                p.account.clone(),
                p.display_name.clone(),
                p.employee_no.clone(),
                p.title.clone(),
                p.phone.clone(),
                p.email.clone(),
                p.primary_department_id.map(path).unwrap_or_default(),
                p.department_ids.iter().map(|d| path(*d)).collect::<Vec<_>>().join(";"),
                p.manager_id.and_then(|m| accounts.get(&m).cloned()).unwrap_or_default(),
                p.roles.join(";"),
            ];
            w.write_record(record.iter().map(|c| crate::util::csv_cell(c).into_owned()))
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
    }
    out.extend(w.into_inner().map_err(|e| ServiceError::Internal(e.to_string()))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Box<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::storage::migrate(&path).unwrap();
        let conn = crate::storage::open(&path).unwrap();
        (dir, conn)
    }

    #[test]
    fn gbk_and_bom_files_decode() {
        let (gbk, _, _) = encoding_rs::GBK.encode("账号,姓名\nzhangsan,张三\n");
        assert_eq!(decode(&gbk).unwrap(), "账号,姓名\nzhangsan,张三\n");
        assert_eq!(decode("\u{feff}a,b".as_bytes()).unwrap(), "a,b");
    }

    #[test]
    fn a_bad_row_imports_nothing_and_is_named() {
        let (_d, conn) = db();
        let csv = "account,display_name,department,email,manager\nok1,甲,总部/研发,a@b.c,\nbad one,乙,总部,,\nok2,丙,总部,not-an-email,ghost\n";
        match import(&*conn, csv.as_bytes(), None) {
            Err(ImportError::Invalid(errors)) => {
                let cells: Vec<(u64, &str)> = errors.iter().map(|e| (e.row, e.column.as_str())).collect();
                assert_eq!(cells, vec![(3, "account"), (4, "email"), (4, "manager")]);
            }
            other => panic!("expected row errors, got {other:?}"),
        }
        let (people, total) = directory::search_people(&*conn, &directory::PeopleQuery::default()).unwrap();
        assert_eq!((people.len(), total), (0, 0));
    }

    #[test]
    fn import_creates_departments_people_and_managers_then_export_round_trips() {
        let (_d, conn) = db();
        let csv = "账号,姓名,部门,其他部门,上级,角色\nboss,王总,总部,,,admin\nwang,王小明,总部/研发部/前端组,总部/产品部,boss,\n";
        let summary = import(&*conn, csv.as_bytes(), None).unwrap();
        assert_eq!(summary, ImportSummary { created: 2, updated: 0, departments_created: 4 });
        let wang = directory::person_by_account(&*conn, "wang").unwrap().unwrap();
        assert_eq!(wang.initials, "wxm");
        assert!(wang.manager_id.is_some());
        let out = String::from_utf8(export(&*conn).unwrap()).unwrap();
        assert!(out.starts_with('\u{feff}'));
        assert!(out.contains("wang,王小明,,,,,总部/研发部/前端组,总部/产品部,boss,"), "{out}");
        // Importing the export again changes nothing but counts as updates.
        let again = import(&*conn, out.as_bytes(), None).unwrap();
        assert_eq!(again, ImportSummary { created: 0, updated: 2, departments_created: 0 });
    }

    #[test]
    fn exported_cells_never_start_a_formula_and_import_back_unchanged() {
        let (_d, conn) = db();
        let csv = "account,display_name,title,phone\nmallory,\"=HYPERLINK(\"\"http://x\"\",\"\"点我\"\")\",@SUM(A1),+86 138 0000 0000\n";
        import(&*conn, csv.as_bytes(), None).unwrap();
        let out = String::from_utf8(export(&*conn).unwrap()).unwrap();
        let line = out.lines().find(|l| l.starts_with("mallory")).unwrap();
        assert!(line.contains("\"'=HYPERLINK("), "{line}");
        assert!(line.contains(",'@SUM(A1),"), "{line}");
        assert!(line.contains(",'+86 138 0000 0000,"), "{line}");
        import(&*conn, out.as_bytes(), None).unwrap();
        let p = directory::person_by_account(&*conn, "mallory").unwrap().unwrap();
        assert_eq!(p.display_name, "=HYPERLINK(\"http://x\",\"点我\")");
        assert_eq!((p.title.as_str(), p.phone.as_str()), ("@SUM(A1)", "+86 138 0000 0000"));
    }

    #[test]
    fn oversized_imports_are_refused_with_their_limit() {
        let (_d, conn) = db();
        let mut csv = String::from("account,display_name\n");
        for i in 0..=MAX_IMPORT_ROWS {
            csv.push_str(&format!("u{i},n\n"));
        }
        match import(&*conn, csv.as_bytes(), None) {
            Err(ImportError::Invalid(e)) => assert!(e[0].reason.contains("at most 200000 rows"), "{e:?}"),
            other => panic!("expected the row limit, got {other:?}"),
        }
        let big = vec![b'a'; MAX_IMPORT_BYTES + 1];
        match import(&*conn, &big, None) {
            Err(ImportError::Service(ServiceError::TooLarge(m))) => assert!(m.contains("32 MiB"), "{m}"),
            other => panic!("expected the size limit, got {other:?}"),
        }
    }
}
