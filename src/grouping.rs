//! The bounded tallies behind `--group-by` and the report's domain tables.
//!
//! Both keep memory bounded whatever the list: at most [`MAX_GROUPS`] group values and
//! [`MAX_DOMAINS`] domains are kept; rows beyond go to a pooled bucket and are counted as such.

use std::collections::HashMap;

use crate::input::Chunk;
use crate::model::Status;
use crate::output::summary::{DomainReport, DomainShare, GroupKind};

/// Distinct group values kept as groups of their own; rows of values first seen later are
/// pooled in "(other)". A vendor or month column has a handful; a column with millions of
/// values (an id, a name) is not a grouping.
pub const MAX_GROUPS: usize = 10_000;

/// Domains counted for the report's tables (about 5 MB at the cap).
pub const MAX_DOMAINS: usize = 50_000;
/// A domain needs this many rows to be listed: below it, a share says little.
pub const MIN_DOMAIN_ROWS: u64 = 5;
/// Rows per domain table.
pub const TOP_DOMAINS: usize = 10;

/// Group key of a row whose group cell is missing or blank.
pub const EMPTY_KEY: u64 = 0;
/// Group key of a row that could not be read.
pub const UNREADABLE_KEY: u64 = 1;

/// The group key of row `r`: a 64-bit hash of its group cell (trimmed of blanks), or
/// [`EMPTY_KEY`] / [`UNREADABLE_KEY`]. A row that could not be read (an unclosed quote, too
/// long) has no trustworthy group cell; a ragged row's cells are taken as they stand.
///
/// It runs on the check stage's threads, while the row's bytes are in cache, so the format
/// stage's sequential pass only looks a `u64` up in a map of at most [`MAX_GROUPS`] entries.
/// Two values share a group only if their 64-bit hashes collide: about 3·10⁻¹² for 10,000
/// values, the same standard as the duplicate detector's identity hashes.
pub fn group_key(chunk: &Chunk, r: usize, column: usize) -> u64 {
    if chunk.rows[r].problem.is_some() {
        return UNREADABLE_KEY;
    }
    let cell = chunk
        .field(r, column)
        .map(<[u8]>::trim_ascii)
        .unwrap_or_default();
    if cell.is_empty() {
        return EMPTY_KEY;
    }
    // Fixed seeds: the same value hashes alike on every thread.
    let h = ahash::RandomState::with_seeds(0x7072_6562, 0x6f75_6e63, 0x6520_6772, 0x6f75_7073)
        .hash_one(cell);
    h.max(UNREADABLE_KEY + 1)
}

/// Group key → dense id, for the per-group tallies. One entry per distinct value; the value's
/// bytes are copied once, when it is first seen.
pub struct GroupIndex {
    /// 0-based column of the group values.
    pub column: usize,
    ids: HashMap<u64, u32, std::hash::BuildHasherDefault<PassThroughHasher>>,
    /// By id: what the group is and (for a value) its bytes.
    groups: Vec<(GroupKind, Box<[u8]>)>,
    /// Ids of the special groups, created when first needed: empty, unreadable, other.
    special: [Option<u32>; 3],
    capped: bool,
}

impl GroupIndex {
    pub fn new(column: usize) -> Self {
        GroupIndex {
            column,
            ids: HashMap::default(),
            groups: Vec::new(),
            special: [None; 3],
            capped: false,
        }
    }

    fn special(&mut self, kind: GroupKind) -> u32 {
        let slot = match kind {
            GroupKind::Empty => 0,
            GroupKind::Unreadable => 1,
            GroupKind::Other | GroupKind::Value => 2,
        };
        *self.special[slot].get_or_insert_with(|| {
            self.groups.push((kind, Box::default()));
            (self.groups.len() - 1) as u32
        })
    }

    /// The group of `key` if it has one already (read-only, so rows can look it up in
    /// parallel; only the few rows with a new key need [`GroupIndex::id_of`]).
    pub fn known(&self, key: u64) -> Option<u32> {
        match key {
            EMPTY_KEY => self.special[0],
            UNREADABLE_KEY => self.special[1],
            _ => self.ids.get(&key).copied(),
        }
    }

    /// The group of row `r` of `chunk`, whose [`group_key`] is `key`: "(unreadable)",
    /// "(empty)", the value's own group, or "(other)" past [`MAX_GROUPS`] values.
    pub fn id_of(&mut self, key: u64, chunk: &Chunk, r: usize) -> u32 {
        match key {
            UNREADABLE_KEY => return self.special(GroupKind::Unreadable),
            EMPTY_KEY => return self.special(GroupKind::Empty),
            _ => {}
        }
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let cell = chunk
            .field(r, self.column)
            .map(<[u8]>::trim_ascii)
            .unwrap_or_default();
        self.add_value(key, cell)
    }

    /// The group of a computed value (not an input cell: `--group-by prebounce_provider`),
    /// whose key is `key`; [`EMPTY_KEY`] for none.
    pub fn id_of_value(&mut self, key: u64, value: &[u8]) -> u32 {
        if key == EMPTY_KEY {
            return self.special(GroupKind::Empty);
        }
        match self.ids.get(&key) {
            Some(&id) => id,
            None => self.add_value(key, value),
        }
    }

    fn add_value(&mut self, key: u64, value: &[u8]) -> u32 {
        if self.ids.len() >= MAX_GROUPS {
            self.capped = true;
            return self.special(GroupKind::Other);
        }
        let id = self.groups.len() as u32;
        self.groups.push((GroupKind::Value, value.into()));
        self.ids.insert(key, id);
        id
    }

    /// Distinct values kept as their own group.
    pub fn distinct_values(&self) -> usize {
        self.ids.len()
    }

    pub fn capped(&self) -> bool {
        self.capped
    }

    /// The kind and display name of group `id` (values as lossy UTF-8).
    pub fn name(&self, id: u32) -> (GroupKind, String) {
        let (kind, bytes) = &self.groups[id as usize];
        match kind.label() {
            Some(label) => (*kind, label.to_owned()),
            None => (*kind, String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

/// Rows per status for each domain, for the report's "top domains" tables.
#[derive(Default)]
pub struct DomainTally {
    counts: HashMap<Box<str>, [u64; 4], ahash::RandomState>,
    not_counted: u64,
}

impl DomainTally {
    #[cfg(test)]
    fn add(&mut self, domain: &str, status: Status) {
        let mut counts = [0; 4];
        counts[status.index()] = 1;
        self.add_counts(domain, &counts);
    }

    /// Add rows per status (indexed by [`Status::index`]) at `domain`.
    pub fn add_counts(&mut self, domain: &str, counts: &[u64; 4]) {
        if let Some(c) = self.counts.get_mut(domain) {
            for (a, b) in c.iter_mut().zip(counts) {
                *a += b;
            }
        } else if self.counts.len() < MAX_DOMAINS {
            self.counts.insert(domain.into(), *counts);
        } else {
            self.not_counted += counts.iter().sum::<u64>();
        }
    }

    /// The domains with the highest invalid and catch-all shares among those with at least
    /// [`MIN_DOMAIN_ROWS`] rows.
    pub fn report(&self) -> DomainReport {
        let top = |status: Status| {
            let mut v: Vec<DomainShare> = self
                .counts
                .iter()
                .filter_map(|(d, c)| {
                    let rows: u64 = c.iter().sum();
                    let n = c[status.index()];
                    (rows >= MIN_DOMAIN_ROWS && n > 0).then(|| DomainShare {
                        domain: d.to_string(),
                        rows,
                        invalid: c[Status::Invalid.index()],
                        catch_all: c[Status::CatchAll.index()],
                        share: n as f64 / rows as f64,
                    })
                })
                .collect();
            v.sort_by(|a, b| {
                b.share
                    .total_cmp(&a.share)
                    .then(b.rows.cmp(&a.rows))
                    .then_with(|| a.domain.cmp(&b.domain))
            });
            v.truncate(TOP_DOMAINS);
            v
        };
        DomainReport {
            domains_counted: self.counts.len() as u64,
            max_domains: MAX_DOMAINS,
            rows_not_counted: self.not_counted,
            min_rows: MIN_DOMAIN_ROWS,
            top_invalid: top(Status::Invalid),
            top_catch_all: top(Status::CatchAll),
        }
    }
}

/// The domain part of a malformed address, for the domain tables: the text after its last
/// `@`, lower-cased; None when there is none.
pub fn malformed_domain(text: &str) -> Option<String> {
    let (_, domain) = crate::syntax::normalize_input(text).rsplit_once('@')?;
    let domain = domain.trim();
    (!domain.is_empty() && domain.len() <= 255).then(|| domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{InputOptions, InputReader, InputSource};
    use std::io::Write;

    fn chunk_of(text: &str) -> Chunk {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let (mut reader, _) = InputReader::open(
            &InputSource::File(f.path().into()),
            &InputOptions::default(),
        )
        .unwrap();
        reader.next_chunk(100).unwrap().unwrap()
    }

    #[test]
    fn groups_by_value_with_empty_and_unreadable_buckets() {
        let chunk = chunk_of(
            "email,source\na@x.com,acme\nb@x.com, acme \nc@x.com,\nd@x.com,<b>\ne@x.com,acme,extra\nf@x.com,bulk\n\"g@x.com,bulk\n",
        );
        let mut g = GroupIndex::new(1);
        let ids: Vec<u32> = (0..chunk.len())
            .map(|r| g.id_of(group_key(&chunk, r, 1), &chunk, r))
            .collect();
        for (r, id) in ids.iter().enumerate() {
            assert_eq!(g.known(group_key(&chunk, r, 1)), Some(*id));
        }
        assert_eq!(g.known(12345), None);
        let names: Vec<String> = ids.iter().map(|&id| g.name(id).1).collect();
        assert_eq!(
            names,
            [
                "acme",
                "acme",
                "(empty)",
                "<b>",
                "acme",
                "bulk",
                "(unreadable)"
            ]
        );
        assert_eq!(ids[0], ids[1]);
        // A ragged row is read as it stands; a row with an unclosed quote is unreadable.
        assert_eq!(ids[4], ids[0]);
        assert_eq!(g.name(ids[2]).0, GroupKind::Empty);
        assert_eq!(g.name(ids[6]).0, GroupKind::Unreadable);
        assert_eq!(g.distinct_values(), 3);
        assert!(!g.capped());
    }

    #[test]
    fn values_beyond_the_cap_are_pooled() {
        let mut text = String::from("email,source\n");
        for i in 0..MAX_GROUPS + 5 {
            text.push_str(&format!("a@x.com,v{i}\n"));
        }
        text.push_str("a@x.com,v0\n");
        let mut g = GroupIndex::new(1);
        let mut reader_text = tempfile::NamedTempFile::new().unwrap();
        reader_text.write_all(text.as_bytes()).unwrap();
        let (mut reader, _) = InputReader::open(
            &InputSource::File(reader_text.path().into()),
            &InputOptions::default(),
        )
        .unwrap();
        let mut last = Vec::new();
        while let Some(chunk) = reader.next_chunk(4096).unwrap() {
            last = (0..chunk.len())
                .map(|r| g.id_of(group_key(&chunk, r, 1), &chunk, r))
                .collect();
        }
        assert!(g.capped());
        assert_eq!(g.distinct_values(), MAX_GROUPS);
        // The last rows: v10000..v10004 pooled, then v0 again in its own group.
        let n = last.len();
        assert_eq!(g.name(last[n - 2]), (GroupKind::Other, "(other)".into()));
        assert_eq!(last[n - 2], last[n - 6]);
        assert_eq!(g.name(last[n - 1]), (GroupKind::Value, "v0".into()));
    }

    #[test]
    fn domain_tally_is_capped_and_ranks_by_share() {
        let mut t = DomainTally::default();
        for _ in 0..8 {
            t.add("good.com", Status::Valid);
        }
        for _ in 0..2 {
            t.add("good.com", Status::Invalid);
        }
        for _ in 0..5 {
            t.add("bad.com", Status::Invalid);
        }
        t.add("tiny.com", Status::Invalid);
        for _ in 0..6 {
            t.add("catch.com", Status::CatchAll);
        }
        let r = t.report();
        let names: Vec<&str> = r.top_invalid.iter().map(|d| d.domain.as_str()).collect();
        assert_eq!(names, ["bad.com", "good.com"], "tiny.com has too few rows");
        assert_eq!(r.top_invalid[1].share, 0.2);
        assert_eq!(r.top_catch_all[0].domain, "catch.com");
        assert_eq!(r.domains_counted, 4);
        let mut t = DomainTally::default();
        for i in 0..MAX_DOMAINS + 3 {
            t.add(&format!("d{i}.com"), Status::Valid);
        }
        t.add("d0.com", Status::Valid);
        let r = t.report();
        assert_eq!(r.domains_counted, MAX_DOMAINS as u64);
        assert_eq!(r.rows_not_counted, 3);
    }

    #[test]
    fn malformed_domains() {
        assert_eq!(
            malformed_domain("ann@Gmail..COM").as_deref(),
            Some("gmail..com")
        );
        assert_eq!(malformed_domain("ann at gmail.com"), None);
        assert_eq!(malformed_domain("ann@"), None);
        assert_eq!(
            malformed_domain(" <x y@Foo.org> ").as_deref(),
            Some("foo.org")
        );
    }
}

/// For keys that are hashes already (group keys, the duplicate detector's address hashes):
/// don't hash them again.
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);
impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
