//! Embeds the built administration console (`ui/dist/admin`, made by
//! `scripts/ui.sh build`) into the binary, so the server stays one file.
//! Without a build, a page saying how to make one is embedded instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, base, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push((rel.to_string_lossy().replace('\\', "/"), path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = manifest.join("../../ui/dist/admin");
    println!("cargo:rerun-if-changed={}", dist.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut list = Vec::new();
    files(&dist, &dist, &mut list);
    if !list.iter().any(|(name, _)| name == "index.html") {
        let placeholder = out_dir.join("admin-placeholder.html");
        std::fs::write(
            &placeholder,
            "<!doctype html><meta charset=utf-8><title>Hutong</title>\
             <p>The administration console was not built into this server. Run <code>scripts/ui.sh build</code>, \
             then build the server again.</p><p>管理控制台未编译进此服务器：请运行 <code>scripts/ui.sh build</code> 后重新编译。</p>",
        )
        .expect("write placeholder");
        list = vec![("index.html".into(), placeholder)];
    }
    list.sort();
    let mut code = String::from("/// Files of the administration console: (path, bytes).\npub static ADMIN_FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &list {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(code, "    ({name:?}, include_bytes!({:?})),", path.display().to_string())
            .expect("write to string");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("admin_files.rs"), code).expect("write admin_files.rs");
}
