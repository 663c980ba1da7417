//! What `submit` and a worker do besides the queue's SQL: read a list's distinct addresses by
//! domain, write a unit's addresses as a list for the pipeline, find each domain's mail server
//! for the grouping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dns::DnsResolver;
use crate::smtp::plan::targets_of;
use crate::{Error, VerifyConfig};

/// A list's rows, and its distinct well-formed addresses by domain (ASCII), both in
/// first-seen order.
pub struct ListAddresses {
    pub rows: u64,
    pub domains: Vec<(String, Vec<String>)>,
}

/// Reads `config.input` as the pipeline would and gathers its distinct well-formed addresses
/// (by the key the store files them under; each written `local@ascii-domain`).
pub fn list_addresses(config: &VerifyConfig) -> Result<ListAddresses, Error> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut domains: Vec<(String, Vec<String>)> = Vec::new();
    let rows = crate::pipeline::well_formed_addresses(config, |a| {
        if !seen.insert(a.dedup_key()) {
            return;
        }
        let domain = a.domain_ascii();
        let at = *index.entry(domain.to_owned()).or_insert_with(|| {
            domains.push((domain.to_owned(), Vec::new()));
            domains.len() - 1
        });
        domains[at].1.push(format!("{}@{}", a.local, domain));
    })?;
    Ok(ListAddresses { rows, domains })
}

/// Takes out of `list` the addresses the job's store or suppression list answers as of `now`
/// (the job's submission: its collect answers them the same way), and the domains left with
/// none; returns how many addresses it took out. They need no unit.
pub fn drop_answered(
    config: &VerifyConfig,
    list: &mut ListAddresses,
    now: i64,
) -> Result<usize, crate::store::StoreError> {
    let all: Vec<String> = list.domains.iter().flat_map(|(_, a)| a.clone()).collect();
    let answered = crate::pipeline::answered_without_network(config, &all, now)?;
    if answered.is_empty() {
        return Ok(0);
    }
    for (_, addresses) in &mut list.domains {
        addresses.retain(|a| !answered.contains(a));
    }
    list.domains.retain(|(_, a)| !a.is_empty());
    Ok(answered.len())
}

/// Writes a unit's addresses as a one-column list (`email`) in `dir`, for the pipeline.
pub fn write_unit_list(dir: &Path, addresses: &[String]) -> std::io::Result<PathBuf> {
    let path = dir.join("unit.csv");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    w.write_record(["email"])?;
    for a in addresses {
        w.write_record([a.as_str()])?;
    }
    w.flush()?;
    Ok(path)
}

/// Each domain's first mail server address, as the SMTP stage would try it ("" for a domain
/// with none to probe: no MX and no address, a null MX, only forbidden addresses).
pub fn first_servers(
    config: &VerifyConfig,
    domains: &[String],
) -> Result<Vec<(String, String)>, Error> {
    let resolver = Arc::new(DnsResolver::new(&config.dns)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the DNS runtime: {e}")))?;
    let allow_private = config.policy.allow_private_mx;
    let out = runtime.block_on(async {
        let lookups = domains.iter().map(|d| {
            let resolver = Arc::clone(&resolver);
            async move {
                let evidence = resolver.domain(d).await;
                let server = targets_of(d, &evidence, allow_private)
                    .first()
                    .and_then(|t| t.ips.first())
                    .map(|ip| ip.to_string())
                    .unwrap_or_default();
                (d.clone(), server)
            }
        });
        futures::future::join_all(lookups).await
    });
    Ok(out)
}
