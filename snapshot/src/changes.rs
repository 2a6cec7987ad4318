//! `docker commit --change` instructions, applied to an image's runtime config.
//!
//! Supported: `ENV`, `LABEL`, `CMD`, `ENTRYPOINT`, `WORKDIR`, `USER`, `EXPOSE`,
//! with Dockerfile syntax (keywords are case-insensitive). As in a Dockerfile, the
//! arguments of `ENV`, `LABEL`, `WORKDIR` and `USER` have their quotes removed and
//! `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` expanded against
//! the image's environment as it is *before* the instruction, so
//! `ENV PATH=/opt/bin:$PATH` works. Each instruction sets its own field and
//! nothing else (Docker's commit semantics): `ENTRYPOINT` does not reset `CMD`.
//!
//! Differences from Docker: `CMD`/`ENTRYPOINT` arguments that look like a JSON
//! array (start with `[`, end with `]`, contain a `"`) but do not parse are an
//! error rather than a shell command; `EXPOSE` takes no variables.
//!
//! It edits an image config in memory; it does not know where the config comes
//! from or goes to.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Config;

/// The instructions accepted, for error messages.
const SUPPORTED: &str = "ENV, LABEL, CMD, ENTRYPOINT, WORKDIR, USER, EXPOSE";

/// Errors from parsing a change instruction.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("empty change instruction (supported: {SUPPORTED})")]
    Empty,
    #[error("{instruction} is not a supported change instruction (supported: {SUPPORTED})")]
    Unsupported { instruction: String },
    #[error("invalid {instruction} change {input:?}: {reason}")]
    Invalid {
        instruction: &'static str,
        input: String,
        reason: String,
    },
    /// A value grew past [`MAX_EXPANDED`] bytes as its variables were
    /// expanded (`ENV A=$A$A` doubles `A` each time it is given).
    #[error("{instruction} change {input:?}: its value expands to more than {MAX_EXPANDED} bytes")]
    TooLong {
        instruction: &'static str,
        input: String,
    },
}

/// The most bytes one value may expand to.
pub const MAX_EXPANDED: usize = 64 << 10;

/// The deepest `${VAR:-${...}}` nesting a value may have.
pub const MAX_NESTING: usize = 16;

/// One parsed change instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `ENV K=V [K2=V2...]` or `ENV K V`: sets variables, replacing any of the
    /// same name in place.
    Env(Vec<(String, Word)>),
    /// `LABEL k=v [k2=v2...]` or `LABEL k v`: adds or replaces labels.
    Label(Vec<(String, Word)>),
    /// `CMD ["exec","form"]` or `CMD shell form` (run by `/bin/sh -c`).
    Cmd(Vec<String>),
    /// `ENTRYPOINT ["exec","form"]` or `ENTRYPOINT shell form`.
    Entrypoint(Vec<String>),
    /// `WORKDIR /path`; a relative path is resolved against the current one.
    Workdir(Word),
    /// `USER user[:group]`.
    User(Word),
    /// `EXPOSE 80 53/udp 8000-8002/tcp`: added to the exposed ports, normalized
    /// as `PORT/PROTO`.
    Expose(Vec<String>),
}

impl Change {
    /// The instruction's keyword, upper-case.
    pub fn instruction(&self) -> &'static str {
        match self {
            Change::Env(_) => "ENV",
            Change::Label(_) => "LABEL",
            Change::Cmd(_) => "CMD",
            Change::Entrypoint(_) => "ENTRYPOINT",
            Change::Workdir(_) => "WORKDIR",
            Change::User(_) => "USER",
            Change::Expose(_) => "EXPOSE",
        }
    }
}

impl FromStr for Change {
    type Err = ChangeError;

    fn from_str(input: &str) -> Result<Self, ChangeError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ChangeError::Empty);
        }
        let (keyword, rest) = match input.split_once(char::is_whitespace) {
            Some((keyword, rest)) => (keyword, rest.trim()),
            None => (input, ""),
        };
        let instruction: &'static str = match keyword.to_ascii_uppercase().as_str() {
            "ENV" => "ENV",
            "LABEL" => "LABEL",
            "CMD" => "CMD",
            "ENTRYPOINT" => "ENTRYPOINT",
            "WORKDIR" => "WORKDIR",
            "USER" => "USER",
            "EXPOSE" => "EXPOSE",
            other => {
                return Err(ChangeError::Unsupported {
                    instruction: other.to_owned(),
                })
            }
        };
        let invalid = |reason: String| ChangeError::Invalid {
            instruction,
            input: input.to_owned(),
            reason,
        };
        if rest.is_empty() {
            return Err(invalid("it needs arguments".into()));
        }
        let change = match instruction {
            "ENV" => Change::Env(parse_pairs(rest).map_err(invalid)?),
            "LABEL" => Change::Label(parse_pairs(rest).map_err(invalid)?),
            "CMD" => Change::Cmd(parse_command(rest).map_err(invalid)?),
            "ENTRYPOINT" => Change::Entrypoint(parse_command(rest).map_err(invalid)?),
            "WORKDIR" => Change::Workdir(Word::parse(rest).map_err(invalid)?),
            "USER" => Change::User(Word::parse(rest).map_err(invalid)?),
            "EXPOSE" => Change::Expose(parse_ports(rest).map_err(invalid)?),
            _ => unreachable!("keyword matched above"),
        };
        Ok(change)
    }
}

/// Applies `changes` in order to an image's runtime config. A value that
/// expands to more than [`MAX_EXPANDED`] bytes is an error, and leaves
/// `config` partly changed.
pub fn apply(changes: &[Change], config: &mut Config) -> Result<(), ChangeError> {
    for change in changes {
        apply_one(change, config)?;
    }
    Ok(())
}

fn apply_one(change: &Change, config: &mut Config) -> Result<(), ChangeError> {
    // Variables expand against the environment from before the instruction.
    let env_before = config.env().clone().unwrap_or_default();
    let expand = |word: &Word| {
        word.expand(&env_before)
            .ok_or_else(|| ChangeError::TooLong {
                instruction: change.instruction(),
                input: word.to_string(),
            })
    };
    match change {
        Change::Env(pairs) => {
            let mut env = env_before.clone();
            for (name, value) in pairs {
                let entry = format!("{name}={}", expand(value)?);
                match env.iter_mut().find(|e| env_name(e) == name.as_str()) {
                    Some(existing) => *existing = entry,
                    None => env.push(entry),
                }
            }
            config.set_env(Some(env));
        }
        Change::Label(pairs) => {
            let mut labels = config.labels().clone().unwrap_or_default();
            for (name, value) in pairs {
                labels.insert(name.clone(), expand(value)?);
            }
            config.set_labels(Some(labels));
        }
        Change::Cmd(cmd) => {
            config.set_cmd(Some(cmd.clone()));
        }
        Change::Entrypoint(entrypoint) => {
            config.set_entrypoint(Some(entrypoint.clone()));
        }
        Change::Workdir(dir) => {
            let current = config.working_dir().as_deref().unwrap_or("/");
            let dir = resolve_workdir(current, &expand(dir)?);
            config.set_working_dir(Some(dir));
        }
        Change::User(user) => {
            config.set_user(Some(expand(user)?));
        }
        Change::Expose(ports) => {
            let mut exposed = config.exposed_ports().clone().unwrap_or_default();
            let mut seen: std::collections::HashSet<String> = exposed.iter().cloned().collect();
            for port in ports {
                if seen.insert(port.clone()) {
                    exposed.push(port.clone());
                }
            }
            config.set_exposed_ports(Some(exposed));
        }
    }
    Ok(())
}

fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(name, _)| name)
}

/// `NAME=VALUE ...` pairs, or the legacy `NAME VALUE` (the value being the rest
/// of the line).
fn parse_pairs(rest: &str) -> Result<Vec<(String, Word)>, String> {
    let words = split_words(rest)?;
    let first = words.first().ok_or("it needs arguments")?;
    if !first.contains('=') {
        let (name, value) = rest
            .split_once(char::is_whitespace)
            .ok_or("expected NAME=VALUE or NAME VALUE")?;
        return Ok(vec![(parse_name(name)?, Word::parse(value.trim_start())?)]);
    }
    words
        .iter()
        .map(|word| {
            let (name, value) = word
                .split_once('=')
                .ok_or_else(|| format!("expected NAME=VALUE, got {word:?}"))?;
            Ok((parse_name(name)?, Word::parse(value)?))
        })
        .collect()
}

fn parse_name(raw: &str) -> Result<String, String> {
    let word = Word::parse(raw)?;
    let name = word
        .as_literal()
        .ok_or_else(|| format!("variables are not supported in names ({raw:?})"))?;
    if name.is_empty() {
        return Err("names cannot be empty".into());
    }
    Ok(name)
}

/// The JSON exec form `["a","b"]`, or the shell form run by `/bin/sh -c`.
fn parse_command(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(args) => return Ok(args),
            // `[ -f /x ] && y` is a shell command; `["a", b]` is broken JSON.
            Err(e) if rest.ends_with(']') && rest.contains('"') => {
                return Err(format!("not a JSON array of strings: {e}"))
            }
            Err(_) => {}
        }
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// `PORT`, `PORT/PROTO` or `FIRST-LAST/PROTO`, several separated by whitespace.
/// The ports of `EXPOSE`, each once (at most every port of every protocol,
/// however many ranges repeat them), in the order first given.
fn parse_ports(rest: &str) -> Result<Vec<String>, String> {
    let mut ports = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for spec in rest.split_whitespace() {
        if spec.contains('$') {
            return Err(format!("variables are not supported in ports ({spec:?})"));
        }
        let (range, proto) = match spec.split_once('/') {
            Some((range, proto)) => (range, proto.to_ascii_lowercase()),
            None => (spec, "tcp".to_owned()),
        };
        let proto: u8 = match proto.as_str() {
            "tcp" => 0,
            "udp" => 1,
            "sctp" => 2,
            _ => {
                return Err(format!(
                    "unknown protocol {proto:?} in {spec:?} (expected tcp, udp or sctp)"
                ))
            }
        };
        let port = |s: &str| match s.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!(
                "invalid port {s:?} in {spec:?} (expected 1 to 65535)"
            )),
        };
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => (port(range)?, port(range)?),
        };
        if first > last {
            return Err(format!("invalid port range {range:?} in {spec:?}"));
        }
        for p in first..=last {
            if seen.insert((p, proto)) {
                ports.push(format!("{p}/{}", ["tcp", "udp", "sctp"][proto as usize]));
            }
        }
    }
    Ok(ports)
}

/// Docker's `normalizeWorkdir`: relative paths are joined to the current one.
fn resolve_workdir(current: &str, requested: &str) -> String {
    if requested.starts_with('/') {
        clean_path(requested)
    } else {
        clean_path(&format!("/{current}/{requested}"))
    }
}

/// Lexical clean of an absolute path: no `.`, `..` or repeated `/`.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Splits arguments on whitespace outside quotes, keeping quotes and escapes in
/// the words (as Docker's `parseWords` does).
fn split_words(s: &str) -> Result<Vec<&str>, String> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if start.is_none() {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
        }
        match (quote, c) {
            (_, '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                words.push(&s[start.take().unwrap_or(i)..i]);
            }
            _ => {}
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if let Some(start) = start {
        words.push(&s[start..]);
    }
    Ok(words)
}

/// An argument with its quotes removed and its `$VAR` references kept, to be
/// expanded against the image's environment when the change is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var { name: String, op: VarOp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum VarOp {
    Value,
    /// `${VAR:-word}`
    Default(Word),
    /// `${VAR:+word}`
    Alternative(Word),
}

impl Word {
    /// A word with no quotes or variables.
    pub fn literal(s: impl Into<String>) -> Self {
        Word(vec![Piece::Lit(s.into())])
    }

    /// Parses shell-like text: quotes and backslashes removed, `$VAR`,
    /// `${VAR}`, `${VAR:-word}`, `${VAR:+word}` kept for expansion (not inside
    /// single quotes).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut chars = s.chars().peekable();
        let word = parse_word(&mut chars, false, 0)?;
        debug_assert!(chars.next().is_none());
        Ok(word)
    }

    /// The text, if there is no variable in it.
    pub fn as_literal(&self) -> Option<String> {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => Some(s.as_str()),
                Piece::Var { .. } => None,
            })
            .collect()
    }

    /// The text with variables replaced by their values in `env` (`NAME=VALUE`
    /// entries); unset variables expand to nothing. `None` if it would be
    /// longer than [`MAX_EXPANDED`] bytes.
    pub fn expand(&self, env: &[String]) -> Option<String> {
        let mut out = String::new();
        self.expand_into(env, &mut out)?;
        Some(out)
    }

    fn expand_into(&self, env: &[String], out: &mut String) -> Option<()> {
        let push = |out: &mut String, s: &str| {
            (out.len() + s.len() <= MAX_EXPANDED).then(|| out.push_str(s))
        };
        for piece in &self.0 {
            match piece {
                Piece::Lit(s) => push(out, s)?,
                Piece::Var { name, op } => {
                    let value = env
                        .iter()
                        .find_map(|e| e.strip_prefix(name.as_str())?.strip_prefix('='))
                        .unwrap_or("");
                    match op {
                        VarOp::Value => push(out, value)?,
                        VarOp::Default(word) if value.is_empty() => word.expand_into(env, out)?,
                        VarOp::Default(_) => push(out, value)?,
                        VarOp::Alternative(word) if !value.is_empty() => {
                            word.expand_into(env, out)?
                        }
                        VarOp::Alternative(_) => {}
                    }
                }
            }
        }
        Some(())
    }
}

impl fmt::Display for Word {
    /// The word in `${VAR}` syntax, without quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.0 {
            match piece {
                Piece::Lit(s) => f.write_str(s)?,
                Piece::Var { name, op } => match op {
                    VarOp::Value => write!(f, "${{{name}}}")?,
                    VarOp::Default(w) => write!(f, "${{{name}:-{w}}}")?,
                    VarOp::Alternative(w) => write!(f, "${{{name}:+{w}}}")?,
                },
            }
        }
        Ok(())
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Parses up to the end, or up to an unquoted `}` when `in_braces`.
fn parse_word(chars: &mut Chars<'_>, in_braces: bool, depth: usize) -> Result<Word, String> {
    if depth > MAX_NESTING {
        return Err(format!("substitutions nested more than {MAX_NESTING} deep"));
    }
    let mut pieces = Vec::new();
    let mut lit = String::new();
    loop {
        let Some(c) = chars.next() else {
            if in_braces {
                return Err("unterminated ${".into());
            }
            break;
        };
        match c {
            '}' if in_braces => break,
            '\\' => lit.extend(chars.next()),
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => lit.push(c),
                    None => return Err("unterminated ' quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.peek() {
                        Some('"' | '$' | '\\') => lit.extend(chars.next()),
                        _ => lit.push('\\'),
                    },
                    Some('$') => parse_dollar(chars, &mut pieces, &mut lit, depth)?,
                    Some(c) => lit.push(c),
                    None => return Err("unterminated \" quote".into()),
                }
            },
            '$' => parse_dollar(chars, &mut pieces, &mut lit, depth)?,
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(Word(pieces))
}

fn is_name_char(c: &char) -> bool {
    c.is_ascii_alphanumeric() || *c == '_'
}

/// After a `$`: a variable reference, or a literal `$`.
fn parse_dollar(
    chars: &mut Chars<'_>,
    pieces: &mut Vec<Piece>,
    lit: &mut String,
    depth: usize,
) -> Result<(), String> {
    let braced = chars.next_if_eq(&'{').is_some();
    let mut name = String::new();
    while let Some(c) = chars.next_if(is_name_char) {
        name.push(c);
    }
    if name.is_empty() {
        if braced {
            return Err("bad substitution: expected a variable name after ${".into());
        }
        lit.push('$');
        return Ok(());
    }
    let op = if !braced {
        VarOp::Value
    } else {
        match chars.next() {
            Some('}') => VarOp::Value,
            Some(':') => match chars.next() {
                Some('-') => VarOp::Default(parse_word(chars, true, depth + 1)?),
                Some('+') => VarOp::Alternative(parse_word(chars, true, depth + 1)?),
                _ => {
                    return Err(format!(
                        "unsupported substitution in ${{{name}:...}} (use :- or :+)"
                    ))
                }
            },
            Some(c) => return Err(format!("unsupported substitution {c:?} in ${{{name}...}}")),
            None => return Err("unterminated ${".into()),
        }
    };
    if !lit.is_empty() {
        pieces.push(Piece::Lit(std::mem::take(lit)));
    }
    pieces.push(Piece::Var { name, op });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config(value: Value) -> Config {
        serde_json::from_value(value).unwrap()
    }

    /// Applies the changes to a base config and returns the result as JSON
    /// (labels and exposed ports are maps, so their order does not matter).
    fn run(base: &Value, changes: &[&str]) -> Value {
        let changes: Vec<Change> = changes
            .iter()
            .map(|c| c.parse().unwrap_or_else(|e| panic!("{c}: {e}")))
            .collect();
        let mut config = config(base.clone());
        apply(&changes, &mut config).unwrap();
        serde_json::to_value(&config).unwrap()
    }

    #[test]
    fn applies_changes() {
        let base = json!({
            "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
            "Cmd": ["/bin/bash"],
            "WorkingDir": "/home/work",
            "Labels": {"a": "1"},
            "ExposedPorts": {"22/tcp": {}},
        });
        #[rustfmt::skip]
        let cases: &[(&[&str], Value)] = &[
            (&["ENV FOO=bar"], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=C", "FOO=bar"]})),
            (&["env LANG=C.UTF-8 X=\"a b\""], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "X=a b"]})),
            (&["ENV X hello  world"], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=C", "X=hello  world"]})),
            (&["ENV PATH=/opt/bin:$PATH"], json!({"Env": ["PATH=/opt/bin:/usr/bin:/bin", "LANG=C"]})),
            (&["ENV A=${LANG}x B=${NOPE:-dflt} C=${LANG:+set} D='$LANG' E=\\$LANG"],
                json!({"Env": ["PATH=/usr/bin:/bin", "LANG=C", "A=Cx", "B=dflt", "C=set", "D=$LANG", "E=$LANG"]})),
            // Values expand against the environment from before the instruction.
            (&["ENV LANG=fr X=$LANG"], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=fr", "X=C"]})),
            (&["ENV LANG=fr", "ENV X=$LANG"], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=fr", "X=fr"]})),
            (&["ENV EMPTY="], json!({"Env": ["PATH=/usr/bin:/bin", "LANG=C", "EMPTY="]})),
            (&["LABEL b=2 \"c d\"=\"x y\""], json!({"Labels": {"a": "1", "b": "2", "c d": "x y"}})),
            (&["LABEL a=replaced"], json!({"Labels": {"a": "replaced"}})),
            (&["LABEL legacy some value"], json!({"Labels": {"a": "1", "legacy": "some value"}})),
            (&["CMD [\"python\", \"-m\", \"http.server\"]"], json!({"Cmd": ["python", "-m", "http.server"]})),
            (&["CMD []"], json!({"Cmd": []})),
            (&["CMD echo $HOME && sleep 1"], json!({"Cmd": ["/bin/sh", "-c", "echo $HOME && sleep 1"]})),
            (&["CMD [ -f /x ] && run"], json!({"Cmd": ["/bin/sh", "-c", "[ -f /x ] && run"]})),
            (&["ENTRYPOINT [\"/init\"]"], json!({"Entrypoint": ["/init"], "Cmd": ["/bin/bash"]})),
            (&["Entrypoint /init --verbose"], json!({"Entrypoint": ["/bin/sh", "-c", "/init --verbose"]})),
            (&["WORKDIR /srv"], json!({"WorkingDir": "/srv"})),
            (&["WORKDIR proj/../src"], json!({"WorkingDir": "/home/work/src"})),
            (&["WORKDIR a", "WORKDIR b"], json!({"WorkingDir": "/home/work/a/b"})),
            (&["WORKDIR /data//x/."], json!({"WorkingDir": "/data/x"})),
            (&["USER work:work"], json!({"User": "work:work"})),
            (&["EXPOSE 80 53/udp 8000-8002/TCP 22"], json!({"ExposedPorts": {
                "22/tcp": {}, "80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}})),
        ];
        for (changes, expected) in cases {
            let got = run(&base, changes);
            for (field, value) in expected.as_object().unwrap() {
                assert_eq!(&got[field], value, "{changes:?}: {field}");
            }
        }
    }

    #[test]
    fn applies_to_empty_config() {
        let got = run(
            &json!({}),
            &[
                "ENV A=1",
                "LABEL x=y",
                "WORKDIR rel",
                "EXPOSE 80",
                "USER 1000",
            ],
        );
        assert_eq!(
            got,
            json!({
                "Env": ["A=1"], "Labels": {"x": "y"}, "WorkingDir": "/rel",
                "ExposedPorts": {"80/tcp": {}}, "User": "1000",
            })
        );
    }

    #[test]
    fn rejects_bad_changes() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("", "empty change instruction"),
            ("   ", "empty change instruction"),
            ("RUN apt-get install -y vim", "RUN is not a supported change instruction (supported: ENV, LABEL, CMD"),
            ("volume /data", "VOLUME is not a supported"),
            ("ONBUILD RUN x", "ONBUILD is not a supported"),
            ("COPY a b", "COPY is not a supported"),
            ("ADD a b", "ADD is not a supported"),
            ("ENV", "invalid ENV change \"ENV\": it needs arguments"),
            ("ENV ONLYNAME", "invalid ENV change \"ENV ONLYNAME\": expected NAME=VALUE or NAME VALUE"),
            ("ENV A=1 B", "expected NAME=VALUE, got \"B\""),
            ("ENV =x", "names cannot be empty"),
            ("ENV $X=1", "variables are not supported in names"),
            ("ENV A=\"unterminated", "unterminated \" quote"),
            ("ENV A='x", "unterminated ' quote"),
            ("ENV A=${B", "unterminated ${"),
            ("ENV A=${B#x}", "unsupported substitution"),
            ("ENV A=${}", "bad substitution"),
            ("LABEL", "invalid LABEL change"),
            ("CMD", "invalid CMD change"),
            ("CMD [\"a\", b]", "not a JSON array of strings"),
            ("ENTRYPOINT [\"a\", 1]", "invalid ENTRYPOINT change"),
            ("WORKDIR", "invalid WORKDIR change"),
            ("USER", "invalid USER change"),
            ("EXPOSE", "invalid EXPOSE change"),
            ("EXPOSE http", "invalid port \"http\""),
            ("EXPOSE 0", "invalid port \"0\""),
            ("EXPOSE 70000", "invalid port \"70000\""),
            ("EXPOSE 80/icmp", "unknown protocol \"icmp\""),
            ("EXPOSE 90-80", "invalid port range"),
            ("EXPOSE $PORT", "variables are not supported in ports"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Change>().expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input:?}: {err:?} lacks {expected:?}"
            );
            assert!(!err.ends_with('.'), "{err}");
        }
    }

    #[test]
    fn words() {
        let cases = [
            ("plain", vec![], "plain"),
            ("a\\ b", vec![], "a b"),
            ("\"a \\\"q\\\" \\n\"", vec![], "a \"q\" \\n"),
            ("'$X'", vec!["X=1"], "$X"),
            ("\"$X\"-$X-${X}", vec!["X=1"], "1-1-1"),
            ("${X:-${Y:-z}}", vec!["Y=y"], "y"),
            ("${X:-a b}", vec![], "a b"),
            ("$", vec![], "$"),
            ("a$-b", vec![], "a$-b"),
            ("$XY", vec!["X=1"], ""),
            ("${X}Y", vec!["X=1"], "1Y"),
        ];
        for (input, env, expected) in cases {
            let env: Vec<String> = env.into_iter().map(String::from).collect();
            let word = Word::parse(input).unwrap();
            assert_eq!(word.expand(&env).as_deref(), Some(expected), "{input}");
        }
        assert_eq!(Word::parse("a$B").unwrap().to_string(), "a${B}");
        assert_eq!(
            Word::parse("'a'b").unwrap().as_literal().as_deref(),
            Some("ab")
        );
        assert_eq!(Word::literal("x"), Word::parse("x").unwrap());
        assert_eq!(Word::parse("").unwrap().as_literal().as_deref(), Some(""));
    }

    #[test]
    fn split_words_keeps_quotes() {
        assert_eq!(
            split_words(" a=\"b c\"  d='e f' g\\ h ").unwrap(),
            vec!["a=\"b c\"", "d='e f'", "g\\ h"]
        );
    }

    /// Found while fuzzing (the change target ran at 43 inputs a second):
    /// `ENV A=$A$A` given n times made a value of 2^n bytes, from a request
    /// of a few hundred; and a value nested deeper than the stack overflowed
    /// the recursive parser (and would abort the service with it). Both are
    /// now errors.
    #[test]
    fn deep_nesting_and_exponential_expansion_are_refused() {
        let deep = format!("ENV A={}x{}", "${A:-".repeat(100_000), "}".repeat(100_000));
        let e = deep.parse::<Change>().unwrap_err().to_string();
        assert!(e.contains("nested more than 16 deep"), "{e}");
        let ok = format!("ENV A={}x{}", "${A:-".repeat(16), "}".repeat(16));
        ok.parse::<Change>().unwrap();

        let mut changes: Vec<Change> = vec!["ENV A=0123456789abcdef".parse().unwrap()];
        for _ in 0..40 {
            changes.push("ENV A=$A$A".parse().unwrap());
        }
        let mut config = Config::default();
        let e = apply(&changes, &mut config).unwrap_err();
        assert!(
            matches!(&e, ChangeError::TooLong { instruction: "ENV", input } if input == "${A}${A}"),
            "{e}"
        );
        let longest = config.env().as_ref().unwrap().iter().map(String::len).max();
        assert!(longest.unwrap() <= MAX_EXPANDED + 2, "{longest:?}");
    }

    /// Found by fuzzing: `EXPOSE 4000-8002` made 4,000 ports, each checked
    /// against all before it (a timeout under the fuzzer); ranges repeated
    /// on one line multiplied the list without bound. Ports are now kept
    /// once, in a set.
    #[test]
    fn exposed_port_ranges_are_kept_once_and_quickly() {
        let line = format!("EXPOSE {}", ["1-65535/tcp"; 8].join(" "));
        let started = std::time::Instant::now();
        let Change::Expose(ports) = line.parse::<Change>().unwrap() else {
            panic!("not an EXPOSE");
        };
        assert_eq!(ports.len(), 65535);
        assert_eq!(
            (ports[0].as_str(), ports[65534].as_str()),
            ("1/tcp", "65535/tcp")
        );
        let mut config = Config::default();
        let changes = vec![
            Change::Expose(ports),
            "EXPOSE 1-65535/udp 80".parse().unwrap(),
        ];
        apply(&changes, &mut config).unwrap();
        assert_eq!(config.exposed_ports().as_ref().unwrap().len(), 2 * 65535);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
