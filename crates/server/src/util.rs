//! Small pure helpers that several domains share and that belong to none of
//! them (so no domain has to import another one for them).

/// Full pinyin and initials of a name, lower case: 张三 → ("zhangsan", "zs").
/// Other letters and digits are kept (lower-cased) in both.
pub fn pinyin_keys(name: &str) -> (String, String) {
    use pinyin::ToPinyin;
    let mut full = String::new();
    let mut initials = String::new();
    for c in name.chars() {
        if let Some(p) = c.to_pinyin() {
            full.push_str(p.plain());
            initials.push_str(p.first_letter());
        } else if c.is_alphanumeric() {
            let lower: String = c.to_lowercase().collect();
            full.push_str(&lower);
            initials.push_str(&lower);
        }
    }
    (full, initials)
}
