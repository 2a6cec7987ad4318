//! Every program the code and the scripts run is installed by `scripts/deps.sh`.
//!
//! A test that spawns a tool which only happens to be on the developer's machine
//! passes there and fails on a fresh one. This test reads the programs named in
//! `Command::new("…")`, `tool("…")` and `try_tool("…")` calls and in the scripts'
//! command positions, finds the Debian package each comes from on this machine,
//! and requires that package to be in the `scripts/deps.sh` list of the job that
//! runs it, or to be one that every Debian system has (Essential, or of priority
//! `required`). So a missing install step fails here on any machine where the
//! program is installed, and on a fresh machine the tool is missing anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Programs that come from outside Debian's packages: the toolchain, which the
/// README asks for, and the binary under test.
const NOT_PACKAGED: &[&str] = &["cargo", "rustc", "rustup", "freezeframe"];

/// Shell builtins and keywords: never looked up on the PATH.
const SHELL_WORDS: &[&str] = &[
    ".",
    ":",
    "[",
    "[[",
    "]]",
    "alias",
    "break",
    "builtin",
    "case",
    "cd",
    "continue",
    "declare",
    "done",
    "echo",
    "esac",
    "exit",
    "export",
    "false",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "in",
    "kill",
    "let",
    "local",
    "mapfile",
    "printf",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "test",
    "trap",
    "true",
    "type",
    "ulimit",
    "umask",
    "unset",
    "wait",
];

/// Words after which the next word that is not an option is a command.
const PREFIXES: &[&str] = &[
    "!", "{", "}", "command", "do", "elif", "else", "env", "eval", "exec", "if", "nice", "then",
    "time", "until", "while", "xargs",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The package lists of `scripts/deps.sh`: `NAME=(a b "${OTHER[@]}" …)`.
fn deps_lists(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut lists: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once("=(") else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let body = rest.trim_end().trim_end_matches(')');
        let mut set = BTreeSet::new();
        for word in body.split_whitespace() {
            let word = word.trim_matches('"');
            match word.strip_prefix("${").and_then(|w| w.strip_suffix("[@]}")) {
                Some(other) => set.extend(
                    lists
                        .get(other)
                        .unwrap_or_else(|| panic!("deps.sh: {name} uses {other} before it is set"))
                        .iter()
                        .cloned(),
                ),
                None => {
                    set.insert(word.to_string());
                }
            }
        }
        lists.insert(name.to_string(), set);
    }
    lists
}

/// String literals given as the program of `Command::new`, `tool` or `try_tool`.
fn rust_programs(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for call in ["Command::new(", "tool(", "try_tool("] {
        let mut rest = text;
        while let Some(at) = rest.find(call) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + call.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // part of a longer name
            }
            let arg = rest.trim_start();
            if let Some(lit) = arg.strip_prefix('"') {
                if let Some(end) = lit.find('"') {
                    found.insert(lit[..end].to_string());
                }
            }
        }
    }
    found
}

/// The words a shell script runs as commands, as far as a reader can tell
/// without running it: the first word of each pipeline element, of each
/// `$(…)`, after `sh -c '` and after the prefixes above. Comments, heredoc
/// bodies and other single-quoted text (awk programs, commands meant for a
/// container) are not read.
fn shell_programs(text: &str) -> BTreeSet<String> {
    let functions: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().split_once("() {").map(|(n, _)| n.trim()))
        .collect();
    commands(text)
        .into_iter()
        .filter(|c| !functions.contains(c.as_str()))
        .collect()
}

/// The words `shell_programs` reads as commands, its functions among them.
fn commands(text: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut heredoc_end: Option<String> = None;
    for line in text.lines() {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        if let Some(at) = line.find("<<").filter(|&at| !line[at..].starts_with("<<<")) {
            let tag: String = line[at + 2..]
                .trim_start_matches('-')
                .trim_start()
                .chars()
                .filter(|&c| c != '\'' && c != '"')
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            heredoc_end = Some(tag);
        }
        // A case arm's pattern (`build) …`) is no command.
        let line = match line.trim_start().split_once(") ") {
            Some((pattern, rest)) if !pattern.contains(['(', ' ', '$']) => rest,
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }

    // Tokens, with operators as tokens of their own; what runs inside `$(…)`
    // and `sh -c '…'` is read as a script of its own.
    let mut nested = BTreeSet::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = code.chars().peekable();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        if !word.is_empty() {
            tokens.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                tokens.push(";".into());
            }
            '\'' | '"' => {
                let (text, substitutions) = take_quoted(&mut chars, c);
                let shell_c = matches!(tokens.as_slice(), [.., sh, c] if (sh == "sh" || sh == "bash") && c == "-c");
                if word.is_empty() && shell_c {
                    nested.extend(commands(&text));
                } else {
                    for sub in substitutions {
                        nested.extend(commands(&sub));
                    }
                }
                word.push_str("''");
            }
            '\\' => match chars.next() {
                Some('\n') | None => flush(&mut word, &mut tokens),
                Some(escaped) => word.push(escaped),
            },
            '&' if word.ends_with(['>', '<']) || chars.peek() == Some(&'>') => word.push('&'),
            '(' if word.ends_with('=') => {
                // NAME=(…): an array's words, no command in them
                take_substitution(&mut chars);
                word.push_str("()");
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                if let Some(script) = take_substitution(&mut chars) {
                    nested.extend(commands(&script));
                }
                word.push_str("$()");
            }
            '(' if chars.peek() == Some(&'(') => {
                // `(( … ))`: arithmetic, no command in it
                take_substitution(&mut chars);
                chars.next();
                tokens.push(";".into());
            }
            '\n' | ';' | '|' | '&' | '(' | ')' | '`' => {
                flush(&mut word, &mut tokens);
                tokens.push(";".into());
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);

    let mut found = nested;
    let mut at_command = true;
    for token in &tokens {
        if token == ";" {
            at_command = true;
            continue;
        }
        if !at_command {
            continue;
        }
        let t = token.as_str();
        if t.starts_with('-') {
            continue; // an option of a prefix word: `command -v podman`
        }
        if PREFIXES.contains(&t) || t.contains('=') && !t.starts_with('=') {
            continue; // `exec cmd`, `X=1 cmd`: the command is the next word
        }
        at_command = false;
        let is_name = t
            .chars()
            .all(|c| c.is_alphanumeric() || "._+-/".contains(c));
        if !is_name || SHELL_WORDS.contains(&t) || t.starts_with('.') {
            continue;
        }
        found.insert(t.to_string());
    }
    found
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The text of a quoted string whose opening `quote` was just read, and, for
/// double quotes, the scripts of the `$(…)` in it.
fn take_quoted(chars: &mut Chars, quote: char) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut substitutions = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => break,
            '\\' if quote == '"' => text.extend(chars.next()),
            '$' if quote == '"' && chars.peek() == Some(&'(') => {
                chars.next();
                if let Some(sub) = take_substitution(chars) {
                    text.push_str(&format!("$({sub})"));
                    substitutions.push(sub);
                }
            }
            c => text.push(c),
        }
    }
    (text, substitutions)
}

/// The script of a `$(…)` whose `$(` was just read; none for an arithmetic
/// `$((…))`, which is read to its end too.
fn take_substitution(chars: &mut Chars) -> Option<String> {
    let arithmetic = chars.peek() == Some(&'(');
    let mut text = String::new();
    let mut depth = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let (inner, _) = take_quoted(chars, c);
                text.push(c);
                text.push_str(&inner);
                text.push(c);
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        text.push(c);
    }
    (!arithmetic).then_some(text)
}

/// Every file on this machine that `program` may run: each PATH hit, and the
/// standard ones (a PATH can put another Python first).
fn which(program: &str) -> Vec<PathBuf> {
    if program.contains('/') {
        return [PathBuf::from(program)]
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    let mut hits: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(program))
        .filter(|p| p.is_file())
        .collect();
    hits.dedup();
    hits
}

/// The package that owns each of `paths`, asking dpkg once under each name
/// a file has (Debian's merged /usr makes `/bin/sh` and `/usr/bin/sh` one file).
fn packages_of(paths: &BTreeSet<PathBuf>) -> BTreeMap<PathBuf, String> {
    let mut names: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for path in paths {
        let mut variants = vec![path.clone()];
        variants.extend(fs::canonicalize(path));
        for v in variants.clone() {
            if let Ok(rest) = v.strip_prefix("/usr") {
                variants.push(Path::new("/").join(rest));
            }
        }
        for v in variants {
            names.entry(v).or_insert_with(|| path.clone());
        }
    }
    let out = Command::new("dpkg")
        .arg("-S")
        .args(names.keys())
        .output()
        .expect("run dpkg -S");
    let mut owners = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((packages, file)) = line.rsplit_once(": ") else {
            continue;
        };
        if line.starts_with("diversion") {
            continue;
        }
        let package = packages.split(", ").next().unwrap_or("");
        let package = package.split(':').next().unwrap_or("").trim().to_string();
        if let Some(path) = names.get(Path::new(file)) {
            owners.entry(path.clone()).or_insert(package);
        }
    }
    owners
}

/// `packages` and every installed package they depend on: what installing
/// them without their recommendations brings.
fn with_depends(packages: &BTreeSet<String>) -> BTreeSet<String> {
    let mut all = packages.clone();
    let mut todo: Vec<String> = packages.iter().cloned().collect();
    while let Some(p) = todo.pop() {
        let Ok(out) = Command::new("dpkg-query")
            .args(["-W", "-f=${Depends}, ${Pre-Depends}", &p])
            .output()
        else {
            continue;
        };
        for dep in String::from_utf8_lossy(&out.stdout).split([',', '|']) {
            let name = dep.split_whitespace().next().unwrap_or("");
            let name = name.split(':').next().unwrap_or("").to_string();
            if !name.is_empty() && all.insert(name.clone()) {
                todo.push(name);
            }
        }
    }
    all
}

/// True for packages every Debian system has.
fn on_every_debian(package: &str) -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Essential} ${Priority}", package])
        .output()
        .expect("run dpkg-query");
    let text = String::from_utf8_lossy(&out.stdout);
    text.starts_with("yes ") || text.ends_with(" required")
}

/// Which `deps.sh` list covers the programs a file runs.
fn job_of(rel: &Path) -> &'static str {
    let s = rel.to_string_lossy();
    if s.starts_with("bench/") {
        "bench"
    } else if s == "scripts/demo.sh" || (s.contains("/src/") && !s.starts_with("tests/")) {
        // The product and its demo: the build job's packages.
        "build"
    } else {
        "test"
    }
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') && name != ".ci" {
            continue;
        }
        if p.is_dir() {
            files(&p, ext, out);
        } else if ext.is_empty() || p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn every_program_the_code_and_scripts_run_is_installed_by_deps_sh() {
    let root = repo();
    if which("dpkg").is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dpkg is missing: CI runs on Debian, where it never is"
        );
        eprintln!("skipping: not a Debian system (no dpkg), so packages cannot be told");
        return;
    }
    let lists: BTreeMap<String, BTreeSet<String>> =
        deps_lists(&fs::read_to_string(root.join("scripts/deps.sh")).expect("read deps.sh"))
            .into_iter()
            .map(|(job, packages)| (job, with_depends(&packages)))
            .collect();
    for job in ["build", "test", "bench"] {
        assert!(lists.contains_key(job), "scripts/deps.sh has no {job} list");
    }

    let mut wanted: BTreeMap<String, BTreeSet<(String, &str)>> = BTreeMap::new();
    let mut sources = Vec::new();
    for crate_dir in ["config", "snapshot", "runtime", "shim", "tests"] {
        files(&root.join(crate_dir), "rs", &mut sources);
    }
    for path in &sources {
        let rel = path.strip_prefix(&root).unwrap().to_path_buf();
        if rel == Path::new("tests/tests/deps.rs") {
            continue; // its own examples
        }
        for p in rust_programs(&fs::read_to_string(path).unwrap()) {
            wanted
                .entry(p)
                .or_default()
                .insert((rel.display().to_string(), job_of(&rel)));
        }
    }
    let mut scripts = Vec::new();
    files(&root.join("scripts"), "sh", &mut scripts);
    files(&root.join("bench"), "sh", &mut scripts);
    scripts.push(root.join(".ci/run"));
    for path in &scripts {
        let rel = path.strip_prefix(&root).unwrap().to_path_buf();
        for p in shell_programs(&fs::read_to_string(path).unwrap()) {
            wanted
                .entry(p)
                .or_default()
                .insert((rel.display().to_string(), job_of(&rel)));
        }
    }
    assert!(
        wanted.contains_key("umoci") && wanted.contains_key("runc"),
        "found too little: {wanted:?}"
    );
    eprintln!("programs run: {:?}", wanted.keys().collect::<Vec<_>>());

    let hits: BTreeMap<&String, Vec<PathBuf>> = wanted.keys().map(|p| (p, which(p))).collect();
    let owners = packages_of(&hits.values().flatten().cloned().collect());
    let mut problems = Vec::new();
    for (program, users) in &wanted {
        let name = program.rsplit('/').next().unwrap_or(program);
        if NOT_PACKAGED.contains(&name) {
            continue;
        }
        let where_ = users
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let hits = &hits[program];
        if hits.is_empty() {
            problems.push(format!(
                "{program} (run by {where_}) is not installed: add its package to scripts/deps.sh"
            ));
            continue;
        }
        let packages: BTreeSet<&String> = hits.iter().filter_map(|p| owners.get(p)).collect();
        let Some(first) = packages.first() else {
            problems.push(format!(
                "{program} ({}, run by {where_}) belongs to no Debian package",
                hits[0].display()
            ));
            continue;
        };
        if packages.iter().any(|p| on_every_debian(p)) {
            continue;
        }
        for (file, job) in users {
            if !packages.iter().any(|p| lists[*job].contains(*p)) {
                problems.push(format!(
                    "{program} (package {first}) is run by {file}, but scripts/deps.sh does not install it for `{job}`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn shell_commands_are_read_from_command_positions_only() {
    let script = r#"
# runc is only named in this comment
set -euo pipefail
x=$(skopeo inspect y | jq .z)
cleanup() { umount -l "$a" 2>/dev/null || true; }
awk '{print $1}' file
exec /usr/bin/time -f '%e' pigz -6 < in
command -v podman >/dev/null && echo "podman run is a message"
bash -c 'tar -cf - . | zstd -q'
python3 - <<'PY'
import subprocess; subprocess.run(["ctr"])
PY
LC_ALL=C sort data
cleanup
"#;
    let found: Vec<String> = shell_programs(script).into_iter().collect();
    assert_eq!(
        found,
        [
            "/usr/bin/time",
            "awk",
            "bash",
            "jq",
            "podman",
            "python3",
            "skopeo",
            "sort",
            "tar",
            "umount",
            "zstd"
        ]
    );
}

#[test]
fn rust_programs_are_the_literal_first_arguments() {
    let code = r#"Command::new("umoci").arg("x"); tool(
        "skopeo", ["a"]); try_tool("runc", []); Command::new(bin()); my_tool("nope"); Command::new(program)"#;
    let found: Vec<String> = rust_programs(code).into_iter().collect();
    assert_eq!(found, ["runc", "skopeo", "umoci"]);
}

#[test]
fn deps_lists_expand_each_other() {
    let lists = deps_lists("build=(gcc tar)\ntest=(\"${build[@]}\" runc)\n");
    assert_eq!(
        lists["test"],
        ["gcc", "runc", "tar"].map(String::from).into()
    );
}
