//! `prebounce preflight` against the lab: the sender domains of lab/dns/preflight-zones.conf
//! (good and broken SPF, DKIM keys, DMARC records), the prober's reverse DNS, HELO names and
//! blocklists there, and port 25 at the lab's Postfix (open) and at addresses where nothing
//! listens (refused). Every case asserts the JSON.

mod common;

use std::net::TcpListener;

use serde_json::{Value, json};

use common::*;

const DNS: &str = "127.77.0.1";

/// Runs `preflight --json` with the lab's DNS; the JSON and the exit code.
fn preflight(args: &[&str]) -> (Value, i32) {
    lab_up();
    let mut all = vec![
        "preflight",
        "--json",
        "--dns-server",
        DNS,
        "--dns-timeout",
        "2s",
        "--allow-reserved-domains",
    ];
    all.extend_from_slice(args);
    let out = run(&all, b"");
    let code = out.status.code().expect("an exit code");
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{}", stderr(&out)));
    (json, code)
}

/// The check `id` of `part` (sender or prober).
fn check<'a>(json: &'a Value, part: &str, id: &str) -> &'a Value {
    json[part]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no {part} checks in {json:#}"))
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {json:#}"))
}

fn status<'a>(json: &'a Value, part: &str, id: &str) -> &'a str {
    check(json, part, id)["status"].as_str().unwrap()
}

fn ids(json: &Value, part: &str) -> Vec<String> {
    json[part]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_well_set_up_domain_passes_every_sender_check() {
    let (json, code) = preflight(&[
        "--domain",
        "pf-good.test",
        "--dkim-selector",
        "s2048",
        "--allow-private-mx",
    ]);
    assert_eq!(json["sender"]["domain"], "pf-good.test");
    assert_eq!(json["prober"], Value::Null, "--domain alone probes nothing");
    assert_eq!(
        ids(&json, "sender"),
        ["mx", "spf", "dkim:s2048", "dmarc", "bulk-sender"]
    );
    let mx = check(&json, "sender", "mx");
    assert_eq!(mx["status"], "pass");
    assert_eq!(mx["mx"], "mx.pf-good.test");
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["status"], "pass", "{spf:#}");
    assert_eq!(spf["result"], "ok");
    assert_eq!(spf["lookups"], 3);
    assert_eq!(spf["void_lookups"], 0);
    assert_eq!(spf["all"], "-all");
    assert_eq!(spf["tree"]["children"][0]["domain"], "_spf.pf-good.test");
    assert_eq!(spf["tree"]["children"][0]["lookups"], 1);
    let dkim = check(&json, "sender", "dkim:s2048");
    assert_eq!(
        (&dkim["status"], &dkim["bits"]),
        (&json!("pass"), &json!(2048))
    );
    let dmarc = check(&json, "sender", "dmarc");
    assert_eq!(dmarc["status"], "pass");
    assert_eq!(dmarc["policy"], "reject");
    assert_eq!(dmarc["source"], "pf-good.test");
    assert_eq!(dmarc["adkim"], "s");
    assert_eq!(dmarc["rua"], json!(["mailto:dmarc@pf-good.test"]));
    // Without the prober part, reverse DNS is not known: a warning, not a failure.
    let bulk = check(&json, "sender", "bulk-sender");
    assert_eq!(bulk["status"], "warn", "{bulk:#}");
    let fcrdns = bulk["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "fcrdns")
        .unwrap();
    assert_eq!(fcrdns["met"], Value::Null);
    assert_eq!(code, 0);
}

#[test]
fn dkim_keys_are_sized_and_flagged() {
    let (json, code) = preflight(&[
        "--domain",
        "pf-good.test",
        "--allow-private-mx",
        "--dkim-selector",
        "s1024",
        "--dkim-selector",
        "revoked",
        "--dkim-selector",
        "testing",
        "--dkim-selector",
        "nosuch",
    ]);
    let s1024 = check(&json, "sender", "dkim:s1024");
    assert_eq!(
        (&s1024["status"], &s1024["bits"]),
        (&json!("warn"), &json!(1024))
    );
    assert_eq!(s1024["key_type"], "rsa");
    let revoked = check(&json, "sender", "dkim:revoked");
    assert_eq!(revoked["status"], "fail");
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["bits"], Value::Null);
    let testing = check(&json, "sender", "dkim:testing");
    assert_eq!(testing["status"], "warn");
    assert_eq!(testing["testing"], true);
    assert_eq!(testing["bits"], 2048);
    let missing = check(&json, "sender", "dkim:nosuch");
    assert_eq!(missing["status"], "fail");
    assert_eq!(missing["name"], "nosuch._domainkey.pf-good.test");
    assert_eq!(code, 1, "a revoked key and a missing selector fail");
}

#[test]
fn eleven_lookups_through_nested_includes_are_a_permerror() {
    let (json, code) = preflight(&["--domain", "pf-toomany.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["status"], "fail");
    assert_eq!(spf["result"], "permerror");
    assert_eq!(spf["lookups"], 11);
    assert_eq!(spf["void_lookups"], 0);
    assert_eq!(
        spf["errors"],
        json!(["11 DNS-querying terms, over the limit of 10"])
    );
    // The flattened tree shows where the lookups are.
    let detail = spf["detail"].as_str().unwrap();
    assert!(
        detail.contains("include:i1.pf-toomany.test (5 lookups)"),
        "{detail}"
    );
    assert!(
        detail.contains("    include:i3.pf-toomany.test (2 lookups)"),
        "{detail}"
    );
    assert_eq!(code, 1);
}

#[test]
fn three_void_lookups_are_a_permerror() {
    let (json, _) = preflight(&["--domain", "pf-void.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["result"], "permerror");
    assert_eq!(spf["void_lookups"], 3);
    assert_eq!(spf["lookups"], 3);
    assert_eq!(spf["all"], "~all");
}

#[test]
fn an_include_loop_is_a_permerror() {
    let (json, _) = preflight(&["--domain", "pf-loop.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["status"], "fail");
    assert_eq!(
        spf["errors"],
        json!(["include loop: pf-loop.test → back.pf-loop.test → pf-loop.test"])
    );
}

#[test]
fn two_spf_records_are_a_permerror() {
    let (json, _) = preflight(&["--domain", "pf-twospf.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["result"], "permerror");
    assert_eq!(spf["record"], Value::Null);
    assert_eq!(
        spf["errors"],
        json!(["pf-twospf.test has 2 SPF records; it must have exactly one"])
    );
}

#[test]
fn an_spf_syntax_error_is_a_permerror() {
    let (json, _) = preflight(&["--domain", "pf-syntax.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(spf["result"], "permerror");
    assert!(
        spf["errors"][0]
            .as_str()
            .unwrap()
            .contains("300.1.2.3 is not an IPv4 address"),
        "{spf:#}"
    );
}

#[test]
fn plus_all_and_p_none_are_warnings() {
    let (json, code) = preflight(&["--domain", "pf-plusall.test", "--allow-private-mx"]);
    let spf = check(&json, "sender", "spf");
    assert_eq!(
        (&spf["status"], &spf["all"]),
        (&json!("warn"), &json!("+all"))
    );
    let dmarc = check(&json, "sender", "dmarc");
    assert_eq!(
        (&dmarc["status"], &dmarc["policy"]),
        (&json!("warn"), &json!("none"))
    );
    // No DKIM selector was named: the bulk verdict cannot know, and says so.
    assert_eq!(status(&json, "sender", "bulk-sender"), "warn");
    assert_eq!(code, 0);
}

#[test]
fn a_malformed_dmarc_record_fails_and_ptr_and_neutral_all_warn() {
    let (json, code) = preflight(&["--domain", "pf-badmarc.test", "--allow-private-mx"]);
    let dmarc = check(&json, "sender", "dmarc");
    assert_eq!(dmarc["status"], "fail");
    assert_eq!(dmarc["policy"], Value::Null);
    assert!(
        dmarc["detail"].as_str().unwrap().contains("p=maybe"),
        "{dmarc:#}"
    );
    let spf = check(&json, "sender", "spf");
    assert_eq!(
        (&spf["status"], &spf["all"]),
        (&json!("warn"), &json!("?all"))
    );
    assert_eq!(spf["lookups"], 1);
    assert!(
        spf["warnings"].to_string().contains("ptr is deprecated"),
        "{spf:#}"
    );
    assert_eq!(status(&json, "sender", "bulk-sender"), "fail");
    assert_eq!(code, 1);
}

#[test]
fn a_sub_domain_without_dmarc_takes_the_organizational_domains_record() {
    let (json, _) = preflight(&["--domain", "sub.pf-good.test", "--allow-private-mx"]);
    let dmarc = check(&json, "sender", "dmarc");
    assert_eq!(dmarc["source"], "pf-good.test");
    // The organizational record's sp= applies to its sub-domains.
    assert_eq!(dmarc["policy"], "quarantine");
    assert_eq!(dmarc["p"], "reject");
    assert_eq!(dmarc["status"], "pass");
}

#[test]
fn a_bare_domain_fails_mx_spf_and_dmarc() {
    let (json, code) = preflight(&["--domain", "pf-bare.test"]);
    let mx = check(&json, "sender", "mx");
    assert_eq!(
        (&mx["status"], &mx["reason"]),
        (&json!("fail"), &json!("no-mail-server"))
    );
    let spf = check(&json, "sender", "spf");
    assert_eq!(
        (&spf["status"], &spf["result"]),
        (&json!("fail"), &json!("none"))
    );
    assert_eq!(spf["lookups"], 0);
    assert_eq!(spf["all"], Value::Null);
    let dmarc = check(&json, "sender", "dmarc");
    assert_eq!(
        (&dmarc["status"], &dmarc["source"]),
        (&json!("fail"), &Value::Null)
    );
    assert_eq!(code, 1);
}

/// The prober flags of the lab: connections from 127.77.5.1, lab blocklists, lab targets.
fn prober_args<'a>(public_ip: &'a str, helo: &'a str) -> Vec<&'a str> {
    vec![
        "--from",
        "probe@pf-good.test",
        "--dkim-selector",
        "s2048",
        "--allow-private-mx",
        "--source-ip",
        "127.77.5.1",
        "--public-ip",
        public_ip,
        "--helo",
        helo,
        "--dnsbl",
        "bl.pf-prober.test",
        "--dnsbl",
        "refusing.pf-prober.test",
        "--dnsbl",
        "dead.pf-prober.test",
        "--probe-target",
        "127.77.3.1",
        "--probe-target",
        "127.77.3.99",
        "--probe-target",
        "ok.smtp.test",
    ]
}

#[test]
fn a_prober_with_confirmed_reverse_dns_and_open_port_25_passes() {
    let (json, code) = preflight(&prober_args("198.51.100.1", "prober1.pf-prober.test"));
    assert_eq!(json["prober"]["egress_ip"], "127.77.5.1");
    assert_eq!(
        ids(&json, "prober"),
        [
            "egress-ip",
            "ptr",
            "fcrdns",
            "helo",
            "dnsbl:bl.pf-prober.test",
            "dnsbl:refusing.pf-prober.test",
            "dnsbl:dead.pf-prober.test",
            "port25"
        ]
    );
    let egress = check(&json, "prober", "egress-ip");
    assert_eq!(egress["source"], "source-ip");
    assert_eq!(egress["checked_ip"], "198.51.100.1");
    let ptr = check(&json, "prober", "ptr");
    assert_eq!(
        (&ptr["status"], &ptr["name"]),
        (&json!("pass"), &json!("prober1.pf-prober.test"))
    );
    assert_eq!(status(&json, "prober", "fcrdns"), "pass");
    let helo = check(&json, "prober", "helo");
    assert_eq!(
        (&helo["status"], &helo["matches_ip"]),
        (&json!("pass"), &json!(true))
    );
    let bl = check(&json, "prober", "dnsbl:bl.pf-prober.test");
    assert_eq!(
        (&bl["status"], &bl["listed"]),
        (&json!("pass"), &json!(false))
    );
    // 127.255.255.254 is the list refusing the query, never a listing.
    let refusing = check(&json, "prober", "dnsbl:refusing.pf-prober.test");
    assert_eq!(refusing["listed"], Value::Null);
    assert_eq!(refusing["answer"], json!(["127.255.255.254"]));
    assert_eq!(refusing["status"], "warn");
    // A list that does not list its own test point 127.0.0.2 is not answering.
    let dead = check(&json, "prober", "dnsbl:dead.pf-prober.test");
    assert_eq!(dead["listed"], Value::Null);
    let port25 = check(&json, "prober", "port25");
    assert_eq!(
        (&port25["status"], &port25["result"]),
        (&json!("pass"), &json!("open"))
    );
    let targets = port25["targets"].as_array().unwrap();
    assert_eq!(targets[0]["result"], "open");
    assert!(
        targets[0]["detail"].as_str().unwrap().starts_with("220 "),
        "{port25:#}"
    );
    assert_eq!(targets[1]["result"], "refused");
    assert_eq!(targets[1]["address"], "127.77.3.99:25");
    assert_eq!(
        (&targets[2]["target"], &targets[2]["address"]),
        (&json!("ok.smtp.test"), &json!("127.77.3.1:25"))
    );
    assert_eq!(targets[2]["result"], "open");
    // With the prober's reverse DNS confirmed, the sender meets every bulk-sender rule.
    assert_eq!(status(&json, "sender", "bulk-sender"), "pass");
    assert_eq!(code, 0, "{json:#}");
}

#[test]
fn a_listed_prober_whose_ptr_name_points_elsewhere_fails() {
    let (json, code) = preflight(&prober_args("198.51.100.2", "prober1.pf-prober.test"));
    assert_eq!(
        check(&json, "prober", "ptr")["name"],
        "prober2.pf-prober.test"
    );
    let fcrdns = check(&json, "prober", "fcrdns");
    assert_eq!(fcrdns["status"], "fail");
    assert!(
        fcrdns["detail"].as_str().unwrap().contains("198.51.100.99"),
        "{fcrdns:#}"
    );
    let helo = check(&json, "prober", "helo");
    assert_eq!(
        (&helo["status"], &helo["matches_ip"]),
        (&json!("warn"), &json!(false))
    );
    let bl = check(&json, "prober", "dnsbl:bl.pf-prober.test");
    assert_eq!(
        (&bl["status"], &bl["listed"]),
        (&json!("fail"), &json!(true))
    );
    assert_eq!(bl["answer"], json!(["127.0.0.2"]));
    assert_eq!(bl["query"], "2.100.51.198.bl.pf-prober.test");
    assert_eq!(status(&json, "sender", "bulk-sender"), "fail");
    assert_eq!(code, 1);
}

#[test]
fn a_prober_without_ptr_fails_and_skips_fcrdns() {
    let (json, _) = preflight(&prober_args("198.51.100.3", "nohelo.pf-prober.test"));
    let ptr = check(&json, "prober", "ptr");
    assert_eq!(
        (&ptr["status"], &ptr["name"]),
        (&json!("fail"), &Value::Null)
    );
    assert_eq!(status(&json, "prober", "fcrdns"), "skip");
    assert_eq!(
        status(&json, "prober", "helo"),
        "fail",
        "a HELO name that does not resolve"
    );
}

#[test]
fn a_loopback_prober_is_checked_as_it_is_with_allow_private_mx() {
    let (json, _) = preflight(&[
        "--from",
        "probe@pf-good.test",
        "--allow-private-mx",
        "--source-ip",
        "127.77.5.2",
        "--helo",
        "loop.pf-prober.test",
        "--dnsbl",
        "bl.pf-prober.test",
        "--probe-target",
        "127.77.3.1",
    ]);
    let egress = check(&json, "prober", "egress-ip");
    assert_eq!(
        (&egress["status"], &egress["private"]),
        (&json!("pass"), &json!(true))
    );
    assert_eq!(egress["checked_ip"], "127.77.5.2");
    // The resolver answers loopback PTR queries itself: nothing to check.
    assert_eq!(status(&json, "prober", "ptr"), "skip");
    let bl = check(&json, "prober", "dnsbl:bl.pf-prober.test");
    assert_eq!(bl["listed"], true);
    let helo = check(&json, "prober", "helo");
    assert_eq!(
        (&helo["status"], &helo["addresses"]),
        (&json!("warn"), &json!(["127.77.5.1"]))
    );
}

#[test]
fn a_private_egress_address_is_nat_without_allow_private_mx() {
    let (json, _) = preflight(&[
        "--from",
        "probe@pf-good.test",
        "--helo",
        "loop.pf-prober.test",
        "--dnsbl",
        "bl.pf-prober.test",
        "--probe-target",
        "127.77.3.1",
    ]);
    // No --source-ip: the local address of the connection to the target.
    assert_eq!(json["prober"]["egress_ip"], "127.0.0.1");
    let egress = check(&json, "prober", "egress-ip");
    assert_eq!(
        (&egress["status"], &egress["source"]),
        (&json!("warn"), &json!("connection"))
    );
    assert_eq!(egress["checked_ip"], Value::Null);
    assert_eq!(status(&json, "prober", "ptr"), "skip");
    let bl = check(&json, "prober", "dnsbl:bl.pf-prober.test");
    assert_eq!(
        (&bl["status"], &bl["listed"]),
        (&json!("skip"), &Value::Null)
    );
    // Still reachable: the egress question does not change port 25.
    assert_eq!(check(&json, "prober", "port25")["result"], "open");
}

#[test]
fn port_25_refused_everywhere_fails() {
    let (json, code) = preflight(&[
        "--from",
        "probe@pf-good.test",
        "--allow-private-mx",
        "--source-ip",
        "127.77.5.1",
        "--dnsbl",
        "bl.pf-prober.test",
        "--probe-target",
        "127.77.3.99",
        "--probe-target",
        "127.77.3.98",
    ]);
    let port25 = check(&json, "prober", "port25");
    assert_eq!(
        (&port25["status"], &port25["result"]),
        (&json!("fail"), &json!("refused"))
    );
    let results: Vec<&Value> = port25["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["result"])
        .collect();
    assert_eq!(results, [&json!("refused"), &json!("refused")]);
    assert_eq!(code, 1);
}

#[test]
fn a_silent_server_is_filtered_and_one_that_hangs_up_is_refused() {
    // A listener that accepts and never greets, and one that closes at once.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let rude = TcpListener::bind("127.0.0.1:0").unwrap();
    let (silent_addr, rude_addr) = (silent.local_addr().unwrap(), rude.local_addr().unwrap());
    let held = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    // Accepted, then closed at once.
    std::thread::spawn(move || drop(rude.accept()));
    let (silent_target, rude_target) = (silent_addr.to_string(), rude_addr.to_string());
    let (json, _) = preflight(&[
        "--from",
        "probe@pf-good.test",
        "--allow-private-mx",
        "--dnsbl",
        "bl.pf-prober.test",
        "--connect-timeout",
        "1s",
        "--probe-target",
        &silent_target,
        "--probe-target",
        &rude_target,
    ]);
    drop(held);
    let port25 = check(&json, "prober", "port25");
    let targets = port25["targets"].as_array().unwrap();
    assert_eq!(targets[0]["result"], "filtered", "{port25:#}");
    assert!(
        targets[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no greeting"),
        "{port25:#}"
    );
    assert_eq!(targets[1]["result"], "refused", "{port25:#}");
    assert_eq!(port25["result"], "filtered");
    assert_eq!(port25["status"], "fail");
}
