//! Comments and documents name only what exists. Scans the comments of every Rust source
//! (src/, tests/, benches/, examples/, python/src/) and shader (shaders/), and every Markdown
//! file, for:
//!
//! * paths from the repository root (`src/metrics.rs`, `tests/ops/`, `docs/MODEL.md`), and
//!   Rust or WGSL paths relative to `src/` or to the commenting file (`gpu/context.rs`), and
//!   shader names (`pool.wgsl`): the file or directory must exist;
//! * `path:LINE`: the file must have that many lines;
//! * snake_case names in parentheses right after a source path (`src/metrics.rs (plcc,
//!   fit_logistic4)`): each must occur in that file;
//! * Markdown link targets, relative to the document.
//!
//! Globbed or templated names (`*`, `{`, `<`, `$` right after the path) are not checked, nor
//! are paths inside another path (`~/.cache/asna/tune.json`, `/tmp/src/x`, `runs/data/x`).
//! A failure names the commenting file, its line and the missing path.

use std::path::{Path, PathBuf};

/// Top-level directories a path from the repository root starts with.
const ROOTS: &[&str] = &[
    "src/",
    "tests/",
    "shaders/",
    "docs/",
    "python/",
    "benches/",
    "examples/",
    "weights/",
    "data/",
];

/// Characters a path is made of; a candidate preceded by one is inside a longer path or word.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '~' | '$')
}

/// The repository root (set by cargo when the test runs; a copy of the tree can be checked by
/// setting it by hand).
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Every file under `dir` (relative to the root) whose name ends with one of `exts`, skipping
/// build output and caches.
fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = dir.join(&name);
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "__pycache__" | ".pytest_cache"
            ) {
                files_under(&rel, exts, out);
            }
        } else if exts.iter().any(|x| name.ends_with(x)) {
            out.push(rel);
        }
    }
}

/// The comment text of each line (1-based line numbers): whole `//` lines, and what follows
/// ` // ` after code. Markdown files are all text.
fn comment_lines(file: &Path, text: &str) -> Vec<(usize, String)> {
    let markdown = file.extension().is_some_and(|x| x == "md");
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            if markdown {
                return Some((i + 1, line.to_string()));
            }
            let t = line.trim_start();
            if t.starts_with("//") {
                Some((i + 1, t.to_string()))
            } else {
                line.find(" // ").map(|k| (i + 1, line[k..].to_string()))
            }
        })
        .collect()
}

/// One name a comment makes about the tree.
#[derive(Debug, PartialEq)]
struct Citation {
    /// As written.
    path: String,
    /// Candidate locations (relative to the root); the citation holds if one exists.
    candidates: Vec<PathBuf>,
    line: Option<usize>,
    names: Vec<String>,
}

/// The snake_case names (with an underscore, so ordinary words are left out) of a
/// parenthesis that starts `rest`.
fn names_in_parenthesis(rest: &str) -> Vec<String> {
    let Some(inner) = rest.strip_prefix(" (") else {
        return Vec::new();
    };
    let Some(end) = inner.find(')') else {
        return Vec::new();
    };
    inner[..end]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.contains('_')
                && w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// The paths named in one line of comment text written in `file`.
fn citations(file: &Path, text: &str) -> Vec<Citation> {
    let mut out = Vec::new();
    let here = file.parent().unwrap_or(Path::new(""));
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (start, c) = chars[k];
        let prev = if k == 0 { None } else { Some(chars[k - 1].1) };
        if !c.is_ascii_alphanumeric() || prev.is_some_and(is_path_char) {
            k += 1;
            continue;
        }
        let mut j = k;
        while j < chars.len() && is_path_char(chars[j].1) && chars[j].1 != '$' {
            j += 1;
        }
        let end = chars.get(j).map_or(text.len(), |&(i, _)| i);
        k = j.max(k + 1);
        // Sentence punctuation is not part of the path.
        let token = text[start..end].trim_end_matches(['.', '-']);
        let rest = &text[start + token.len()..];
        if rest.starts_with(['*', '{', '<', '$']) || token.contains("..") {
            continue;
        }
        let from_root = ROOTS.iter().any(|r| token.starts_with(r)) && token.len() > 4;
        let source = token.ends_with(".rs") || token.ends_with(".wgsl");
        let candidates: Vec<PathBuf> = if from_root {
            vec![PathBuf::from(token)]
        } else if source && token.contains('/') {
            vec![Path::new("src").join(token), here.join(token)]
        } else if token.ends_with(".wgsl") {
            vec![Path::new("shaders").join(token)]
        } else {
            continue;
        };
        let digits: String = match rest.strip_prefix(':') {
            Some(r) => r.chars().take_while(|c| c.is_ascii_digit()).collect(),
            None => String::new(),
        };
        let line = digits.parse().ok();
        let after = if digits.is_empty() {
            rest
        } else {
            &rest[1 + digits.len()..]
        };
        let names = if source {
            names_in_parenthesis(after)
        } else {
            Vec::new()
        };
        out.push(Citation {
            path: token.to_string(),
            candidates,
            line,
            names,
        });
    }
    // Markdown links in documents, relative to the document (rustdoc's links name items).
    if file.extension().is_none_or(|x| x != "md") {
        return out;
    }
    let mut from = 0;
    while let Some(i) = text[from..].find("](") {
        let open = from + i + 2;
        from = open;
        let Some(close) = text[open..].find(')') else {
            break;
        };
        let target = text[open..open + close].split('#').next().unwrap_or("");
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        out.push(Citation {
            path: target.to_string(),
            candidates: vec![here.join(target)],
            line: None,
            names: Vec::new(),
        });
    }
    out
}

/// What is wrong with a citation, if anything.
fn check(c: &Citation) -> Option<String> {
    let Some(found) = c.candidates.iter().find(|p| root().join(p).exists()) else {
        return Some(format!("`{}` does not exist", c.path));
    };
    if c.line.is_none() && c.names.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(root().join(found)).unwrap_or_default();
    if let Some(line) = c.line {
        let count = text.lines().count();
        if line == 0 || line > count {
            return Some(format!(
                "`{}:{line}`: {} has {count} lines",
                c.path,
                found.display()
            ));
        }
    }
    let missing: Vec<&String> = c
        .names
        .iter()
        .filter(|n| {
            !text.match_indices(n.as_str()).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + n.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        })
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "`{}` has no {}",
            c.path,
            missing
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    None
}

#[test]
fn every_path_a_comment_names_exists() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "examples", "python/src"] {
        files_under(Path::new(dir), &[".rs"], &mut files);
    }
    files_under(Path::new("shaders"), &[".wgsl"], &mut files);
    files_under(Path::new(""), &[".md"], &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f == Path::new("src/lib.rs")),
        "the scan found no sources"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for (line, comment) in comment_lines(file, &text) {
            for c in citations(file, &comment) {
                checked += 1;
                if let Some(p) = check(&c) {
                    problems.push(format!("{}:{line}: {p}", file.display()));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: the scan is broken"
    );
    assert!(
        problems.is_empty(),
        "{} stale names in comments:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_scan_reads_paths_as_intended() {
    let f = Path::new("src/ops/quality.rs");
    let paths = |s: &str| -> Vec<String> { citations(f, s).into_iter().map(|c| c.path).collect() };
    assert_eq!(paths("see src/metrics.rs."), ["src/metrics.rs"]);
    assert_eq!(
        paths("`gpu/kernels.rs` and pool.wgsl"),
        ["gpu/kernels.rs", "pool.wgsl"]
    );
    assert!(paths("~/.cache/asna/tune.json /tmp/src/x runs/data/x").is_empty());
    assert!(paths("`ops/conv/{mod.rs, tiled.rs}` `tests/*.rs` src/<name>.rs").is_empty());
    let c = &citations(f, "src/metrics.rs:12 (plcc, fit_logistic4)")[0];
    assert_eq!(
        (c.line, c.names.clone()),
        (Some(12), vec!["fit_logistic4".to_string()])
    );
    let link = &citations(Path::new("docs/MODEL.md"), "[perf](PERFORMANCE.md#tune)")[0];
    assert_eq!(link.candidates, [PathBuf::from("docs/PERFORMANCE.md")]);
    let stale = &citations(f, "src/metrics.rs (psnr_rgb_u8)")[0];
    assert!(check(stale).unwrap().contains("psnr_rgb_u8"));
    assert!(check(&citations(f, "src/nothing.rs")[0]).is_some());
}
