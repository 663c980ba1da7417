//! Helpers shared by the end-to-end tests: run the real binary, read its outputs back.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LISTS: [&str; 4] = ["valid.csv", "invalid.csv", "catch-all.csv", "unknown.csv"];
pub const APPENDED: usize = prebounce::output::APPENDED_COLUMNS.len();

/// The binary, with its default store (under the cache folder) redirected to a folder of its
/// own: a test never writes to the real home, and no two commands share a cache unless a test
/// passes the same explicit `--store`.
pub fn prebounce() -> Command {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache");
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| {
        // Folders left by earlier test runs (more than an hour old).
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let dir = base.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prebounce"));
    cmd.env("XDG_CACHE_HOME", dir);
    cmd
}

/// Run `prebounce` with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = prebounce()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prebounce");
    let mut pipe = child.stdin.take().expect("stdin");
    // Ignore a broken pipe: the binary may fail before reading everything, which is what some
    // tests check.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().expect("wait for prebounce")
}

/// Verify `input` (written to a file in a new temp dir) at level syntax with extra `args`.
pub fn verify_bytes(input: &[u8], args: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.csv");
    std::fs::write(&path, input).unwrap();
    let out = dir.path().join("out");
    let mut all = vec![
        "verify",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--level",
        "syntax",
    ];
    all.extend_from_slice(args);
    let output = run(&all, b"");
    (dir, out, output)
}

pub fn read_records(path: &Path, delimiter: u8) -> Vec<Vec<Vec<u8>>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.byte_records()
        .map(|rec| rec.unwrap().iter().map(<[u8]>::to_vec).collect())
        .collect()
}

/// Data rows of one list (header dropped).
pub fn list_rows(out: &Path, list: &str) -> Vec<Vec<Vec<u8>>> {
    let mut rows = read_records(&out.join(list), b',');
    assert!(!rows.is_empty(), "{list} has no header row");
    rows.remove(0);
    rows
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Column `name` of each data row of `list`. A `prebounce_*` column is found as a reader of the
/// lists must find it: counted from the row's end, since a ragged row keeps its own width and
/// its appended cells are its last [`APPENDED`].
pub fn column(out: &Path, list: &str, name: &str) -> Vec<String> {
    let rows = read_records(&out.join(list), b',');
    let idx = rows[0]
        .iter()
        .position(|h| h == name.as_bytes())
        .unwrap_or_else(|| panic!("no column {name} in {list}"));
    let from_end = rows[0].len() - idx;
    let appended = name.starts_with("prebounce_") && from_end <= APPENDED;
    rows[1..]
        .iter()
        .map(|r| {
            text(if appended {
                &r[r.len() - from_end]
            } else {
                &r[idx]
            })
        })
        .collect()
}

pub fn summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Decode the corpora's escape scheme (`\\`, `\t`, `\n`, `\r`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`).
/// A surrogate code point (`\ud800`) cannot be a Rust `char`; it becomes U+FFFD, which is just as
/// invalid in an address. Anything else after a backslash is a broken file and panics.
pub fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let digits = match chars.next() {
            Some('\\') => {
                out.push('\\');
                continue;
            }
            Some('t') => {
                out.push('\t');
                continue;
            }
            Some('n') => {
                out.push('\n');
                continue;
            }
            Some('r') => {
                out.push('\r');
                continue;
            }
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            other => panic!("bad escape \\{other:?} in {field:?}"),
        };
        let hex: String = chars.by_ref().take(digits).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == digits)
            .unwrap_or_else(|| panic!("bad hex escape {hex:?} in {field:?}"));
        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
    }
    out
}

/// The bytes of samples/leads.csv (2,500 rows, five vendors in its `source` column).
pub fn sample_leads() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/leads.csv");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The run's report.html.
pub fn report_html(out: &Path) -> String {
    std::fs::read_to_string(out.join("report.html")).expect("report.html")
}

/// Undo the five entities an HTML serializer writes (`&amp;` last, so `&amp;lt;` stays `&lt;`).
pub fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The value of attribute `attr` in every start tag of `html` that has `marker` (e.g.
/// `class="group"`), in document order, unescaped.
pub fn attribute_values(html: &str, marker: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(marker) {
        let tag_start = rest[..i].rfind('<').expect("marker inside a tag");
        let tag_end = i + rest[i..].find('>').expect("tag closes");
        let tag = &rest[tag_start..tag_end];
        if let Some(a) = tag.find(&needle) {
            let v = &tag[a + needle.len()..];
            found.push(html_unescape(&v[..v.find('"').expect("attribute closes")]));
        }
        rest = &rest[tag_end..];
    }
    found
}

/// `attr` of the element with `id="<id>"`.
pub fn attribute_of_id(html: &str, id: &str, attr: &str) -> Option<String> {
    attribute_values(html, &format!("id=\"{id}\""), attr)
        .into_iter()
        .next()
}

/// Whether two floats are the same number up to the last bits. serde_json (without its
/// `float_roundtrip` feature) may parse a printed f64 one ulp off, so a value read back from
/// summary.json can differ from the exact one in its last bit.
pub fn same_float(a: f64, b: f64) -> bool {
    (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

/// The interop lab's directory (lab/up's default, or PREBOUNCE_LAB_DIR).
pub fn lab_dir() -> PathBuf {
    std::env::var("PREBOUNCE_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lab"))
}

/// Starts the lab once per test binary (lab/up is idempotent; as root it installs unbound,
/// Postfix and postgrey when missing).
pub fn lab_up() {
    static UP: std::sync::Once = std::sync::Once::new();
    UP.call_once(|| {
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/up"))
            .output()
            .expect("run lab/up");
        assert!(
            out.status.success(),
            "lab/up failed; it installs unbound, postfix and postgrey from Debian and needs root \
             (run `sudo lab/up` once, or the whole suite with ./scripts/test.sh as root):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The lab tests count what the servers logged during their run, so they take turns: a test
/// running alongside would add its own traffic to the count.
pub fn lab_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A MAIL FROM no earlier run used: postgrey remembers (client, sender, recipient) and folds
/// digits in the sender, so the local part is `prefix` and fresh letters.
pub fn fresh_sender(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut n = nanos ^ (u128::from(std::process::id()) << 64);
    let mut local = String::from(prefix);
    for _ in 0..12 {
        local.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    format!("{local}@sender.test")
}

/// A log file's length now, to read only what a run adds to it.
pub fn offset(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// What a log file gained since `from` (an [`offset`]).
pub fn read_since(path: &Path, from: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned()
}

/// Writes a one-column list (`email` header) to `dir/name`.
pub fn write_list(dir: &Path, name: &str, emails: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::from("email\n");
    for e in emails {
        text.push_str(e);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write the list");
    path
}

/// `verify` of a list against the lab (its DNS, private MX hosts and reserved test domains
/// allowed, no store, quiet), at level smtp from `sender` without the preflight, or at level
/// dns when `sender` is None; `extra` options last. A run that fails fails the test.
pub fn verify_in_lab(list: &Path, out: &Path, sender: Option<&str>, extra: &[&str]) -> Output {
    let mut args = vec![
        "verify",
        list.to_str().expect("UTF-8"),
        "--out",
        out.to_str().expect("UTF-8"),
        "--no-store",
        "--dns-server",
        "127.77.0.1",
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--progress",
        "never",
        "-q",
    ];
    if let Some(sender) = sender {
        args.extend(["--level", "smtp", "--no-preflight", "--from", sender]);
    }
    args.extend_from_slice(extra);
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// A count on smtpd's `disconnect from` line, as (succeeded, sent): `rcpt=2/8`, or `rcpt=6`
/// when all succeeded; (0, 0) when the command was not given.
pub fn smtpd_count(line: &str, command: &str) -> (u32, u32) {
    let Some(v) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(command)?.strip_prefix('='))
    else {
        return (0, 0);
    };
    let (ok, all) = v.split_once('/').unwrap_or((v, v));
    (ok.parse().unwrap_or(0), all.parse().unwrap_or(0))
}

pub const PG_ADMIN: &str = "postgres://prebounce:lab-pg-pass@127.77.8.1:5432/postgres";

/// A database of the test's own in the lab's PostgreSQL (lab/pg), dropped at the end.
pub struct Db {
    pub name: String,
    pub url: String,
}

impl Db {
    pub fn new(test: &str) -> Db {
        lab_up();
        let admin = std::env::var("PREBOUNCE_PG_URL").unwrap_or_else(|_| PG_ADMIN.to_owned());
        let name = format!("pbq_{test}_{}", std::process::id());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("lab postgres");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Db { name, url }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let admin = std::env::var("PREBOUNCE_PG_URL").unwrap_or_else(|_| PG_ADMIN.to_owned());
        if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Owned copies of command-line arguments.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
