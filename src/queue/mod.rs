//! The distributed mode: a job's list verified by many workers on many machines, coordinated by
//! PostgreSQL (issue #18). PostgreSQL holds the queue, the politeness budget shared by the
//! workers, and (unless `--store` names another) the job's store, in one transactional place.
//!
//! - `submit` reads and checks the list on the submitting machine and queues its network work
//!   as units: batches of domains (`dns` at level dns; `mx` at level smtp, which only finds each
//!   domain's mail server), then, once every domain's server is known, **mail-server groups**
//!   (`smtp`): the addresses of the domains one server hosts, so one worker's connection serves
//!   them all.
//! - A worker claims a unit (`FOR UPDATE SKIP LOCKED`) under a lease it renews; one that dies
//!   loses the lease and another takes the unit over. A unit runs the ordinary pipeline over its
//!   addresses against the job's store, as one run of the job ([`crate::store::JobRun`]): each
//!   round of sessions is committed as it ends, so a unit taken over answers what was decided
//!   from the store and a killed worker costs at most its sessions in flight.
//! - `collect` runs the same pipeline over the whole list as the job's run, answered from the
//!   store: the lists are what one machine's `verify` of the list would write.
//!
//! This file is the pure part: how units are cut and grouped, the states, the estimate.
//! `db` is the queue's SQL, `budget` the shared politeness budget, `work` a worker's unit.

pub mod budget;
pub mod db;
pub mod work;

use std::collections::BTreeMap;
use std::time::Duration;

/// Attempts at a unit before it is reported failed instead of retried (a poison input must not
/// be retried forever). An attempt that ended because the worker was stopped or lost its
/// database connection is given back uncounted.
pub const MAX_ATTEMPTS: i32 = 3;

/// Domains in one `dns` or `mx` unit, and addresses in one unit of any kind: small enough that
/// a unit taken over costs little, large enough that claiming is not the work.
pub const DOMAINS_PER_UNIT: usize = 500;
pub const ADDRESSES_PER_UNIT: usize = 2_000;

/// The domains of a list, each with its distinct addresses, cut into units of at most
/// `max_domains` domains and `max_addresses` addresses (a domain with more addresses than that
/// has units of its own). In the order given.
pub fn cut_domains(
    domains: &[(String, Vec<String>)],
    max_domains: usize,
    max_addresses: usize,
) -> Vec<Vec<(String, Vec<String>)>> {
    let (max_domains, max_addresses) = (max_domains.max(1), max_addresses.max(1));
    let mut units: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    let mut current: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_current = 0;
    for (domain, addresses) in domains {
        // A domain without addresses still gets its lookup: one empty piece.
        let pieces: Vec<&[String]> = match addresses.is_empty() {
            true => vec![&[]],
            false => addresses.chunks(max_addresses).collect(),
        };
        for piece in pieces {
            if !current.is_empty()
                && (current.len() >= max_domains || in_current + piece.len() > max_addresses)
            {
                units.push(std::mem::take(&mut current));
                in_current = 0;
            }
            in_current += piece.len();
            current.push((domain.clone(), piece.to_vec()));
        }
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

/// One `smtp` unit: a mail server and addresses of the domains it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGroup {
    /// The server's address ("" for domains with none to probe: they finish at their DNS
    /// verdict without a session).
    pub server: String,
    pub domains: Vec<String>,
    pub addresses: Vec<String>,
}

/// Groups `(server, domain, address)` rows by server, as the single-machine planner does
/// (every domain at one server shares its connections), cut at `max_addresses` (several
/// workers may then share a big server: the budget is global). Largest servers first, so the
/// longest work starts first.
pub fn group_by_server(
    rows: impl IntoIterator<Item = (String, String, String)>,
    max_addresses: usize,
) -> Vec<ServerGroup> {
    let max_addresses = max_addresses.max(1);
    let mut by_server: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (server, domain, address) in rows {
        by_server
            .entry(server)
            .or_default()
            .entry(domain)
            .or_default()
            .push(address);
    }
    let mut servers: Vec<(String, BTreeMap<String, Vec<String>>)> = by_server.into_iter().collect();
    servers.sort_by_key(|(server, domains)| {
        (
            std::cmp::Reverse(domains.values().map(Vec::len).sum::<usize>()),
            server.clone(),
        )
    });
    let mut groups = Vec::new();
    for (server, domains) in servers {
        let domains: Vec<(String, Vec<String>)> = domains.into_iter().collect();
        for unit in cut_domains(&domains, usize::MAX, max_addresses) {
            groups.push(ServerGroup {
                server: server.clone(),
                domains: unit.iter().map(|(d, _)| d.clone()).collect(),
                addresses: unit.into_iter().flat_map(|(_, a)| a).collect(),
            });
        }
    }
    groups
}

/// What a unit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Level dns: the pipeline over the unit's addresses (its domains' verdicts).
    Dns,
    /// Level smtp, first step: each domain's first mail server, for the grouping.
    Mx,
    /// Level smtp: the pipeline over one server group's addresses.
    Smtp,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Dns => "dns",
            UnitKind::Mx => "mx",
            UnitKind::Smtp => "smtp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dns" => Some(UnitKind::Dns),
            "mx" => Some(UnitKind::Mx),
            "smtp" => Some(UnitKind::Smtp),
            _ => None,
        }
    }
}

/// The time left, from the addresses done so far and how long they took; None until some are.
pub fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let left = total.saturating_sub(done);
    Some(elapsed.mul_f64(left as f64 / done as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, n: usize) -> (String, Vec<String>) {
        (
            name.to_owned(),
            (0..n).map(|i| format!("u{i}@{name}")).collect(),
        )
    }

    #[test]
    fn units_keep_every_address_once_within_the_bounds() {
        let domains = vec![
            domain("a.test", 3),
            domain("b.test", 7),
            domain("c.test", 1),
            domain("d.test", 0),
        ];
        let units = cut_domains(&domains, 2, 4);
        let mut seen: Vec<String> = Vec::new();
        for unit in &units {
            assert!(unit.len() <= 2);
            assert!(unit.iter().map(|(_, a)| a.len()).sum::<usize>() <= 4);
            seen.extend(unit.iter().flat_map(|(_, a)| a.clone()));
        }
        let all: Vec<String> = domains.iter().flat_map(|(_, a)| a.clone()).collect();
        assert_eq!(seen, all);
        // A domain with more addresses than a unit holds is spread over units of its own.
        assert_eq!(
            units[1],
            vec![domain("b.test", 7).0]
                .into_iter()
                .map(|d| (d, (0..4).map(|i| format!("u{i}@b.test")).collect()))
                .collect::<Vec<_>>()
        );
        // A domain without addresses still gets its lookup.
        assert!(units.iter().flatten().any(|(d, _)| d == "d.test"));
    }

    #[test]
    fn servers_are_grouped_largest_first_and_cut() {
        let rows = [
            ("10.0.0.1", "a.test", "x@a.test"),
            ("10.0.0.2", "b.test", "x@b.test"),
            ("10.0.0.2", "c.test", "x@c.test"),
            ("10.0.0.2", "b.test", "y@b.test"),
            ("", "dead.test", "x@dead.test"),
        ]
        .map(|(s, d, a)| (s.to_owned(), d.to_owned(), a.to_owned()));
        let groups = group_by_server(rows, 2);
        assert_eq!(groups[0].server, "10.0.0.2");
        assert_eq!(groups[0].addresses, ["x@b.test", "y@b.test"]);
        assert_eq!(groups[1].server, "10.0.0.2");
        assert_eq!(groups[1].domains, ["c.test"]);
        let total: usize = groups.iter().map(|g| g.addresses.len()).sum();
        assert_eq!(total, 5);
        assert!(
            groups
                .iter()
                .any(|g| g.server.is_empty() && g.domains == ["dead.test"])
        );
    }

    #[test]
    fn the_estimate_scales_the_time_so_far() {
        assert_eq!(eta(0, 10, Duration::from_secs(5)), None);
        assert_eq!(
            eta(25, 100, Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(100, 100, Duration::from_secs(10)), Some(Duration::ZERO));
        for k in [UnitKind::Dns, UnitKind::Mx, UnitKind::Smtp] {
            assert_eq!(UnitKind::parse(k.as_str()), Some(k));
        }
    }
}
