//! Deterministic generator of realistic lead lists, for samples/ and the benchmarks.
//!
//! `cargo run --release --example gen_list -- [--rows N] [--seed S] [--headerless | --compact]
//! [--groups N]` writes CSV to stdout: names, an email, a company, the vendor (`source`) and a
//! signup date. `--groups N` replaces the five vendors in `source` by N values (`list-0000` …),
//! spread evenly over the rows, to benchmark `--group-by` with many groups.
//! Vendors differ in quality the way bought lists do: some carry many typos, throwaway inboxes,
//! role accounts, broken cells and repeats; an organic signup list carries few.

use std::io::{self, BufWriter, Write};

/// SplitMix64: tiny, fast, and the same sequence on every platform and version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jonas", "karen",
    "liam", "maria", "noah", "olivia", "paul", "quinn", "rosa", "sam", "tara", "umar", "vera",
    "will", "xena", "yusuf", "zoe", "chloé", "josé", "søren", "zoë",
];
const LAST: &[&str] = &[
    "smith", "müller", "garcia", "johnson", "martin", "rossi", "nguyen", "kowalski", "dubois",
    "silva", "jensen", "tanaka", "obrien", "schmidt", "lopez", "novak", "fischer", "moreau",
    "weber", "clarke",
];
/// Consumer providers with rough market weights (repeated entries weigh more).
const FREE: &[&str] = &[
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.com",
    "yahoo.com",
    "hotmail.com",
    "hotmail.com",
    "outlook.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "gmx.de",
    "web.de",
    "orange.fr",
    "mail.ru",
    "yahoo.co.uk",
    "hotmail.fr",
    "protonmail.com",
];
const COMPANIES: &[(&str, &str)] = &[
    ("Northwind Traders", "northwind-traders.com"),
    ("Contoso Ltd", "contoso-ltd.com"),
    ("Fabrikam", "fabrikam.io"),
    ("Initech", "initech.co.uk"),
    ("Globex", "globex-corp.net"),
    ("Umbrella Health", "umbrella-health.org"),
    ("Stark Logistics", "stark-logistics.de"),
    ("Wayne Foods", "waynefoods.fr"),
    ("Acme Widgets", "acme-widgets.com"),
    ("Hooli", "hooli.xyz"),
    ("Müller Bäckerei", "müller-bäckerei.de"),
    ("Tyrell Systems", "tyrell-systems.com"),
];
const TYPOS: &[&str] = &[
    "gmial.com",
    "gmai.com",
    "gnail.com",
    "gmail.con",
    "gmail.co",
    "hotmial.com",
    "hotmai.com",
    "yahooo.com",
    "yaho.com",
    "outlok.com",
    "icloud.cm",
    "gmail.cmo",
];
const DISPOSABLE: &[&str] = &[
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "yopmail.com",
    "trashmail.com",
    "sharklasers.com",
];
const ROLES: &[&str] = &[
    "info", "sales", "support", "admin", "contact", "office", "hello", "noreply",
];
const BROKEN: &[&str] = &[
    "{f}.{l}gmail.com",
    "{f}..{l}@gmail.com",
    "{f} {l}@gmail.com",
    "{f}@gmail..com",
    "{f}.{l}@",
    "@{d}",
    "{f}@{d}.",
    "{f} at {d}",
    "{F} {L} <{f}@{d}>",
    "{f}@[192.168.0.1]",
    "\"{f} {l}\"@{d}",
    "{f},{l}@{d}",
    "{f}@localhost",
    "{f}@{d};{l}@{d}",
];
const RESERVED: &[&str] = &[
    "example.com",
    "example.org",
    "test.test",
    "demo.invalid",
    "mail.example",
];

/// Quality profile of one vendor: probability of each defect per row.
struct Vendor {
    name: &'static str,
    weight: usize,
    typo: f64,
    disposable: f64,
    role: f64,
    broken: f64,
    reserved: f64,
    duplicate: f64,
    empty: f64,
    free_share: f64,
}

const VENDORS: &[Vendor] = &[
    Vendor {
        name: "organic-signup",
        weight: 35,
        typo: 0.005,
        disposable: 0.003,
        role: 0.005,
        broken: 0.002,
        reserved: 0.0,
        duplicate: 0.01,
        empty: 0.0,
        free_share: 0.6,
    },
    Vendor {
        name: "webinar-2026",
        weight: 20,
        typo: 0.01,
        disposable: 0.01,
        role: 0.02,
        broken: 0.005,
        reserved: 0.002,
        duplicate: 0.03,
        empty: 0.005,
        free_share: 0.4,
    },
    Vendor {
        name: "trade-show-berlin",
        weight: 15,
        typo: 0.02,
        disposable: 0.0,
        role: 0.08,
        broken: 0.02,
        reserved: 0.0,
        duplicate: 0.02,
        empty: 0.01,
        free_share: 0.2,
    },
    Vendor {
        name: "acme-leads",
        weight: 15,
        typo: 0.03,
        disposable: 0.04,
        role: 0.06,
        broken: 0.03,
        reserved: 0.01,
        duplicate: 0.05,
        empty: 0.01,
        free_share: 0.5,
    },
    Vendor {
        name: "bulkdata-pro",
        weight: 15,
        typo: 0.08,
        disposable: 0.12,
        role: 0.10,
        broken: 0.08,
        reserved: 0.04,
        duplicate: 0.10,
        empty: 0.02,
        free_share: 0.7,
    },
];

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ü' => 'u',
            'é' => 'e',
            'ø' => 'o',
            'ë' => 'e',
            'ä' => 'a',
            'ö' => 'o',
            c => c,
        })
        .collect()
}

fn local_part(rng: &mut Rng, f: &str, l: &str) -> String {
    let (f, l) = (ascii_fold(f), ascii_fold(l));
    match rng.below(7) {
        0 => format!("{f}.{l}"),
        1 => format!("{}{l}", &f[..1]),
        2 => format!("{f}_{l}"),
        3 => format!("{f}{}", 1960 + rng.below(50)),
        4 => format!("{f}.{l}+news"),
        5 => capitalize(&format!("{f}.{l}")),
        _ => f,
    }
}

fn pick_vendor(rng: &mut Rng) -> &'static Vendor {
    let total: usize = VENDORS.iter().map(|v| v.weight).sum();
    let mut x = rng.below(total);
    for v in VENDORS {
        if x < v.weight {
            return v;
        }
        x -= v.weight;
    }
    &VENDORS[0]
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Row layout: the full lead record, a compact ≈60-byte record (benchmarks), or the bare address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Full,
    Compact,
    Headerless,
}

pub fn write_list(out: &mut impl Write, rows: usize, seed: u64, layout: Layout) -> io::Result<()> {
    write_list_grouped(out, rows, seed, layout, None)
}

/// [`write_list`] with `groups` source values instead of the vendors' names. The value of a row
/// comes from its index, not the generator, so the rest of the list is the same as without it.
pub fn write_list_grouped(
    out: &mut impl Write,
    rows: usize,
    seed: u64,
    layout: Layout,
    groups: Option<usize>,
) -> io::Result<()> {
    let headerless = layout == Layout::Headerless;
    let mut rng = Rng::new(seed);
    let mut earlier: Vec<String> = Vec::new();
    match layout {
        Layout::Full => writeln!(out, "first_name,last_name,email,company,source,signup_date")?,
        Layout::Compact => writeln!(out, "first_name,last_name,email,source,signup_date")?,
        Layout::Headerless => {}
    }
    for i in 0..rows {
        let v = pick_vendor(&mut rng);
        let source = match groups {
            // A multiplicative hash of the index: every value about equally often, interleaved.
            Some(n) => std::borrow::Cow::Owned(format!(
                "list-{:04}",
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n.max(1) as u64
            )),
            None => std::borrow::Cow::Borrowed(v.name),
        };
        let (f, l) = (*rng.pick(FIRST), *rng.pick(LAST));
        let (company, corp_domain) = *rng.pick(COMPANIES);
        let domain = if rng.chance(v.free_share) {
            *rng.pick(FREE)
        } else {
            corp_domain
        };
        let email = if rng.chance(v.duplicate) && !earlier.is_empty() {
            let prev = earlier[rng.below(earlier.len())].clone();
            if rng.chance(0.3) {
                prev.to_uppercase()
            } else {
                prev
            }
        } else if rng.chance(v.empty) {
            String::new()
        } else if rng.chance(v.broken) {
            rng.pick(BROKEN)
                .replace("{f}", &ascii_fold(f))
                .replace("{l}", &ascii_fold(l))
                .replace("{F}", &capitalize(f))
                .replace("{L}", &capitalize(l))
                .replace("{d}", domain)
        } else if rng.chance(v.typo) {
            format!("{}@{}", local_part(&mut rng, f, l), rng.pick(TYPOS))
        } else if rng.chance(v.disposable) {
            format!("{}@{}", local_part(&mut rng, f, l), rng.pick(DISPOSABLE))
        } else if rng.chance(v.role) {
            format!("{}@{corp_domain}", rng.pick(ROLES))
        } else if rng.chance(v.reserved) {
            format!("{}@{}", local_part(&mut rng, f, l), rng.pick(RESERVED))
        } else if rng.chance(0.01) {
            format!("{f}.{l}@{domain}") // UTF-8 local part (SMTPUTF8)
        } else {
            format!("{}@{domain}", local_part(&mut rng, f, l))
        };
        if earlier.len() < 4096 && !email.is_empty() {
            earlier.push(email.clone());
        }
        if headerless {
            writeln!(out, "{}", csv_cell(&email))?;
        } else if layout == Layout::Compact {
            let date = format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
            writeln!(
                out,
                "{},{},{},{},{date}",
                capitalize(f),
                capitalize(l),
                csv_cell(&email),
                source
            )?;
        } else {
            let date = format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
            writeln!(
                out,
                "{},{},{},{},{},{date}",
                capitalize(f),
                capitalize(l),
                csv_cell(&email),
                csv_cell(company),
                source
            )?;
        }
    }
    out.flush()
}

#[allow(dead_code)] // included by benches/ too, where main is unused
fn main() -> io::Result<()> {
    let mut rows = 1000usize;
    let mut seed = 1u64;
    let mut layout = Layout::Full;
    let mut groups = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => rows = args.next().and_then(|v| v.parse().ok()).unwrap_or(rows),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(seed),
            "--headerless" => layout = Layout::Headerless,
            "--compact" => layout = Layout::Compact,
            "--groups" => groups = args.next().and_then(|v| v.parse().ok()),
            _ => {
                eprintln!(
                    "usage: gen_list [--rows N] [--seed S] [--headerless | --compact] [--groups N]"
                );
                std::process::exit(2);
            }
        }
    }
    let stdout = io::stdout();
    write_list_grouped(
        &mut BufWriter::new(stdout.lock()),
        rows,
        seed,
        layout,
        groups,
    )
}
