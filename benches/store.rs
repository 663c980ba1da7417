//! The store's own costs, without DNS: writing dns-level verdicts (what a first run with a store
//! adds to the dns stage) and reading a domain's stored verdict (what a second run pays for
//! each domain instead of a DNS lookup). `benches/store_figures.sh` measures whole runs.
//!
//! `cargo bench --bench store`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use prebounce::Level;
use prebounce::store::{DnsVerdicts, Record, RunStamp, Store, StoreWriter, Write};
use prebounce::verdict::Reason;

const ADDRESSES: usize = 100_000;
const DOMAINS: usize = 5_000;
/// Addresses per message, as the list writer sends them (one chunk).
const CHUNK: usize = 8_192;

fn domain(i: usize) -> String {
    format!("d{:05}.bench.test", i % DOMAINS)
}

/// One run's messages: each chunk's verdicts, packed, and each domain's verdict once.
fn messages(run: usize) -> Vec<Write> {
    let mut out = Vec::new();
    let mut seen = vec![false; DOMAINS];
    // A fixed scramble of the domains, as in a real list.
    let mut x: u64 = 7;
    for start in (0..ADDRESSES).step_by(CHUNK) {
        let mut dns = DnsVerdicts::new(1_800_000_000 + run as i64);
        let mut domains = Vec::new();
        for i in start..(start + CHUNK).min(ADDRESSES) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let d = (x >> 33) as usize % DOMAINS;
            dns.push(
                |key| {
                    key.push_str(&format!("user{i:07}@"));
                    key.push_str(&domain(d));
                },
                Reason::DomainAcceptsMail,
            );
            if !seen[d] {
                seen[d] = true;
                domains.push(Record {
                    key: domain(d),
                    reason: Reason::DomainAcceptsMail,
                    detail: format!("MX 10 mx.{} (127.77.2.1); mailbox not checked", domain(d)),
                    mx: Some(format!("mx.{}", domain(d))),
                    level: Level::Dns,
                    verified_at: 1_800_000_000,
                    reply: None,
                });
            }
        }
        out.push(Write::Verdicts {
            addresses: Vec::new(),
            dns: vec![dns],
            domains,
        });
    }
    out
}

fn write_run(path: &std::path::Path, run: usize) {
    // One run id for all, as before runs were stamped (when every verdict counted as written
    // after the run's start, 0): the figures in RESULTS.md stay comparable.
    let stamp = RunStamp {
        run: 0,
        under: Default::default(),
    };
    let writer =
        StoreWriter::spawn(Store::open(path, Default::default()).unwrap(), stamp, false).unwrap();
    let tx = writer.sender();
    for m in messages(run) {
        tx.send(m).unwrap();
    }
    drop(tx);
    assert_eq!(writer.finish().unwrap(), ADDRESSES as u64);
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("store");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(ADDRESSES as u64));
    let mut n = 0;
    g.bench_function("write 100k dns-level verdicts into a new store", |b| {
        b.iter(|| {
            n += 1;
            write_run(&dir.path().join(format!("new-{n}.sqlite3")), 0);
        })
    });
    let again = dir.path().join("again.sqlite3");
    write_run(&again, 0);
    let mut run = 0;
    g.bench_function("write them again (every address an update)", |b| {
        b.iter(|| {
            run += 1;
            write_run(&again, run);
        })
    });
    g.throughput(Throughput::Elements(DOMAINS as u64));
    let store = Store::open(&again, Default::default()).unwrap();
    g.bench_function("read 5k domain verdicts", |b| {
        b.iter(|| {
            for d in 0..DOMAINS {
                assert!(store.lookup_domain(&domain(d)).unwrap().verdict.is_some());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
