//! End-to-end: the `prebounce` binary on real files, asserting outputs, exit codes and messages.

mod common;

use common::*;

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}",
        o.status.code(),
        stderr(o)
    );
}

fn exit_code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited normally, not by a signal")
}

#[test]
fn every_row_lands_once_in_input_order_with_columns_untouched() {
    let input = "id,name,email,note\n\
                 1,Ann,ann@gmail.com,\"multi\nline\"\n\
                 2,Bob,bob@@gmail.com,x\n\
                 3,Cy,cy@example.com,\"quote \"\"here\"\"\"\n\
                 4,Di,DI@Gmail.com, spaced \n\
                 5,Ed,ann@GMAIL.com,dup\n\
                 6,Fi,,empty\n\
                 7,Gu,gu@acme-widgets.de,ok\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &[]);
    ok(&o);
    let input_rows = read_records(&out.parent().unwrap().join("list.csv"), b',');
    let mut seen = Vec::new();
    for list in LISTS {
        let rows = list_rows(&out, list);
        let ids: Vec<u32> = rows.iter().map(|r| text(&r[0]).parse().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{list} is out of input order: {ids:?}"
        );
        for r in rows {
            assert_eq!(r.len(), 4 + APPENDED, "{list}: {r:?}");
            let id: usize = text(&r[0]).parse().unwrap();
            assert_eq!(&r[..4], &input_rows[id][..], "row {id} changed in {list}");
            seen.push(id);
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert_eq!(column(&out, "invalid.csv", "id"), ["2", "3", "6"]);
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["syntax", "reserved-domain", "syntax"]
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_normalized"),
        [
            "ann@gmail.com",
            "DI@gmail.com",
            "ann@gmail.com",
            "gu@acme-widgets.de"
        ]
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_flags"),
        ["free", "free", "free;duplicate", ""]
    );
    let s = summary(&out);
    assert_eq!(s["rows"], 7);
    assert_eq!(s["unique_addresses"], 3);
    assert_eq!(s["duplicates"], 1);
    assert_eq!(s["status"]["valid"], 4);
    assert_eq!(s["status"]["invalid"], 3);
    assert_eq!(s["reasons"]["syntax-ok"], 4);
    assert_eq!(s["flags"]["free"], 3);
    assert_eq!(s["level"], "syntax");
    assert_eq!(s["input"]["email_column"], "email");
    // No temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "catch-all.csv",
            "changes.csv", // with a store (the default): empty here
            "invalid.csv",
            "report.html",
            "summary.json",
            "unknown.csv",
            "valid.csv"
        ]
    );
}

#[test]
fn details_suggestions_and_probabilities() {
    let input =
        "email\njane@gmial.com\nbob@acme.con\ninfo@mailinator.com\n\"\"\"q u\"\"@acme.com\"\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &[]);
    ok(&o);
    assert_eq!(
        column(&out, "valid.csv", "prebounce_suggestion"),
        ["gmail.com", "acme.com", ""]
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_flags")[2],
        "role;disposable"
    );
    // Typo domains are often registered by squatters and listed as disposable: its floor applies.
    assert_eq!(
        column(&out, "valid.csv", "prebounce_bounce_p")[1..],
        ["0.0800", "0.3000"]
    );
    let detail = &column(&out, "invalid.csv", "prebounce_detail")[0];
    assert!(detail.contains("quoted local parts"), "{detail}");
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_bounce_p"),
        ["1.0000"]
    );
}

#[test]
fn broken_rows_are_unreadable_but_kept_and_the_rest_survives() {
    let mut input = b"email,name\na@acme.com,A\nb@acme.com\nc@acme.com,C,extra\n".to_vec();
    input.extend_from_slice(b"\xff\xfe@acme.com,Latin\n");
    input.extend_from_slice(b"d@acme.com,M\xfcller\n"); // Latin-1 name: the address is fine
    input.extend_from_slice(b"\"e@acme.com,never closed\n");
    input.extend_from_slice(b"f@acme.com,F\n");
    let (_d, out, o) = verify_bytes(&input, &[]);
    ok(&o);
    let valid = list_rows(&out, "valid.csv");
    let emails: Vec<String> = valid.iter().map(|r| text(&r[0])).collect();
    // Ragged rows are checked like any other (issue #14 item 8).
    assert_eq!(
        emails,
        [
            "a@acme.com",
            "b@acme.com",
            "c@acme.com",
            "d@acme.com",
            "f@acme.com"
        ]
    );
    assert_eq!(
        valid[3][1], b"M\xfcller",
        "non-UTF-8 bytes of other cells are kept as they were"
    );
    let reasons = column(&out, "invalid.csv", "prebounce_reason");
    assert_eq!(reasons, ["unreadable-row"; 2]);
    let details = column(&out, "invalid.csv", "prebounce_detail");
    assert!(details[0].contains("UTF-8"), "{}", details[0]);
    assert!(details[1].contains("quote"), "{}", details[1]);
    let invalid = list_rows(&out, "invalid.csv");
    // The line as it was, its stray quote included (issue #14 item 12), as the row's one cell.
    assert_eq!(invalid[1][0], b"\"e@acme.com,never closed");
    assert_eq!(invalid[1].len(), 1 + APPENDED);
    assert_eq!(summary(&out)["rows"], 7);
}

/// Issue #14 item 8: a row wider or narrower than the header keeps its cells as they came, its
/// address is checked, and it is flagged `ragged-row`; a shifted row's one address is used.
#[test]
fn ragged_rows_keep_their_cells_and_their_addresses() {
    let input = "name,email,source\n\
                 Ann,a@gmail.com,crm,extra1,extra2\n\
                 Bob,b@gmail.com\n\
                 Smith, John,j@gmail.com,crm\n\
                 Two, Cells,x@gmail.com,y@gmail.com\n\
                 Eve\n\
                 Fay,f@gmail.com,crm\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &["--delimiter", ","]);
    ok(&o);
    let input_rows = read_records(&out.parent().unwrap().join("list.csv"), b',');
    // Every row as wide as it came, its own cells byte for byte, then the appended columns.
    let mut back: Vec<Vec<Vec<u8>>> = LISTS
        .iter()
        .flat_map(|l| list_rows(&out, l))
        .map(|r| r[..r.len() - APPENDED].to_vec())
        .collect();
    back.sort();
    let mut sent = input_rows[1..].to_vec();
    sent.sort();
    assert_eq!(back, sent);

    assert_eq!(
        column(&out, "valid.csv", "name"),
        ["Ann", "Bob", "Smith", "Fay"]
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_normalized"),
        ["a@gmail.com", "b@gmail.com", "j@gmail.com", "f@gmail.com"]
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_flags"),
        [
            "free;ragged-row",
            "free;ragged-row",
            "free;ragged-row",
            "free"
        ]
    );
    // A good address in a ragged row is not condemned.
    assert_eq!(
        column(&out, "valid.csv", "prebounce_bounce_p")[..3],
        ["0.0800"; 3]
    );
    let details = column(&out, "valid.csv", "prebounce_detail");
    assert!(
        details[0].contains("5 cells") && details[0].contains("header has 3"),
        "{}",
        details[0]
    );
    assert!(details[1].contains("2 cells"), "{}", details[1]);
    assert!(
        details[2].contains("column 3"),
        "shifted row: {}",
        details[2]
    );
    assert!(!details[3].contains("cells"), "{}", details[3]);
    let valid = list_rows(&out, "valid.csv");
    assert_eq!(valid[0].len(), 5 + APPENDED);
    assert_eq!(valid[1].len(), 2 + APPENDED);
    assert_eq!(valid[0][3..5], [b"extra1".to_vec(), b"extra2".to_vec()]);

    // Two candidate addresses: no guess; the email column's cell is checked as it is.
    assert_eq!(column(&out, "invalid.csv", "name"), ["Two", "Eve"]);
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["syntax", "unreadable-row"]
    );
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_flags"),
        ["ragged-row", "ragged-row"]
    );
    let s = summary(&out);
    assert_eq!(s["flags"]["ragged-row"], 5);
    assert_eq!(s["status"]["valid"], 4);
    assert_eq!(s["rows"], 6);
}

/// Issue #14 item 11: a header over the 1 MiB row limit is read whole, not cut to its first
/// 4 KiB (which turned every data row into an unreadable one).
#[test]
fn a_header_over_a_mebibyte_is_read_whole() {
    let columns = 150_001;
    let mut input = b"email".to_vec();
    for i in 1..columns {
        input.extend_from_slice(format!(",c{i}").as_bytes());
    }
    assert!(input.len() > 1 << 20);
    input.push(b'\n');
    input.extend_from_slice(b"ann@gmail.com");
    input.extend(std::iter::repeat_n(b',', columns - 1));
    input.push(b'\n');
    let (_d, out, o) = verify_bytes(&input, &[]);
    ok(&o);
    let s = summary(&out);
    assert_eq!(s["input"]["columns"], columns);
    assert_eq!(s["status"]["valid"], 1);
    assert_eq!(column(&out, "valid.csv", "prebounce_flags"), ["free"]);
    let header = &read_records(&out.join("valid.csv"), b',')[0];
    assert_eq!(header.len(), columns + APPENDED);
    assert_eq!(header[columns - 1], b"c150000");
}

/// Issue #14 item 11: past the header limit the run stops with exit 2 and says why.
#[test]
fn a_header_past_the_header_limit_stops_with_exit_2() {
    let mut input = b"email,".to_vec();
    input.extend(std::iter::repeat_n(b'x', 17 << 20));
    input.extend_from_slice(b"\nann@gmail.com,y\n");
    let (_d, out, o) = verify_bytes(&input, &[]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("header") && err.contains("16 MiB") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!out.join("valid.csv").exists());
}

/// Issue #14 item 13: two columns of the name `--column` gives: the first is used, and the
/// run says which, and which others have that name.
#[test]
fn duplicate_header_names_are_reported() {
    let (_d, out, o) = verify_bytes(
        b"email,name,Email\nold@,Ann,ann@gmail.com\n",
        &["-c", "email"],
    );
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains("column 1") && err.contains("column 3"),
        "{err}"
    );
    let s = summary(&out);
    assert_eq!(s["input"]["email_column"], "email");
    assert_eq!(s["input"]["email_column_number"], 1);
    let warnings = s["input"]["warnings"].as_array().expect("input.warnings");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].as_str().unwrap().contains("column 3"),
        "{warnings:?}"
    );
    // No warning when the names are distinct.
    let (_d, out, o) = verify_bytes(b"email,name\nann@gmail.com,Ann\n", &["-c", "email"]);
    ok(&o);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(summary(&out)["input"].get("warnings").is_none());
}

#[test]
fn a_ten_megabyte_field_is_one_unreadable_row() {
    let mut input = b"email,notes\na@acme.com,short\nb@acme.com,".to_vec();
    input.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    input.extend_from_slice(b"\nc@acme.com,short\n");
    let (_d, out, o) = verify_bytes(&input, &[]);
    ok(&o);
    assert_eq!(
        column(&out, "valid.csv", "email"),
        ["a@acme.com", "c@acme.com"]
    );
    let detail = &column(&out, "invalid.csv", "prebounce_detail")[0];
    assert!(detail.contains("10485771 bytes"), "{detail}");
    assert!(std::fs::metadata(out.join("invalid.csv")).unwrap().len() < 64 * 1024);
}

#[test]
fn bom_crlf_semicolons_and_detected_column() {
    let input =
        "\u{feff}Name;E-Mail;Firma\r\n\"Smith; Ann\";ann@acme.de;X\r\nBob;bob@acme.de;Y\r\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &[]);
    ok(&o);
    let rows = read_records(&out.join("valid.csv"), b';');
    assert_eq!(
        rows[0][..3],
        [b"Name".to_vec(), b"E-Mail".to_vec(), b"Firma".to_vec()]
    );
    assert_eq!(rows[1][0], b"Smith; Ann");
    assert_eq!(rows.len(), 3);
    assert_eq!(summary(&out)["input"]["delimiter"], ";");
}

#[test]
fn headerless_lists_and_column_options() {
    let (_d, out, o) = verify_bytes(b"ann@acme.de\nbob@acme.de\nnot-an-address\n", &[]);
    ok(&o);
    assert_eq!(
        column(&out, "valid.csv", "column_1"),
        ["ann@acme.de", "bob@acme.de"]
    );
    assert_eq!(summary(&out)["input"]["has_header"], false);

    let (_d, out, o) = verify_bytes(
        b"x|ann@acme.de\ny|bob@acme.de\n",
        &["--no-header", "--column", "2", "--delimiter", "|"],
    );
    ok(&o);
    assert_eq!(summary(&out)["status"]["valid"], 2);

    let (_d, out, o) = verify_bytes(
        b"work,home\nann@acme.de,ann@gmail.com\n",
        &["--column", "home"],
    );
    ok(&o);
    assert_eq!(
        column(&out, "valid.csv", "prebounce_normalized"),
        ["ann@gmail.com"]
    );
}

#[test]
fn empty_and_header_only_inputs_give_empty_lists() {
    for input in [&b""[..], b"email\n", b"\n\n"] {
        let (_d, out, o) = verify_bytes(input, &[]);
        ok(&o);
        for list in LISTS {
            assert!(list_rows(&out, list).is_empty());
        }
        assert_eq!(summary(&out)["rows"], 0);
        assert_eq!(summary(&out)["predicted_bounce_rate"]["all"], 0.0);
    }
}

#[test]
fn stdin_input_and_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = run(
        &[
            "verify",
            "-",
            "--out",
            out.to_str().unwrap(),
            "--level",
            "syntax",
            "--json",
            "-q",
        ],
        b"email\nann@acme.de\n",
    );
    ok(&o);
    assert!(o.stderr.is_empty(), "--quiet printed: {}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed, summary(&out));
    assert_eq!(printed["input"]["path"], "standard input");
}

#[test]
fn default_output_folder_is_beside_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("leads.csv");
    std::fs::write(&input, "email\nann@acme.de\n").unwrap();
    let o = run(
        &["verify", input.to_str().unwrap(), "--level", "syntax"],
        b"",
    );
    ok(&o);
    assert!(dir.path().join("leads.prebounce/valid.csv").exists());
    let human = stderr(&o);
    assert!(
        human.contains("predicted bounce rate") && human.contains("leads.prebounce"),
        "{human}"
    );
}

#[test]
fn exit_codes_and_one_line_messages() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("l.csv");
    std::fs::write(&input, "id,name\n1,Ann\n").unwrap();
    let input = input.to_str().unwrap();
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["verify", "/nonexistent/list.csv", "--level", "syntax"],
            2,
            "cannot open",
        ),
        (
            vec!["verify", input, "--out", out, "--level", "syntax"],
            2,
            "no email column",
        ),
        (
            vec![
                "verify", input, "--out", out, "--level", "syntax", "--column", "mail",
            ],
            2,
            "not found",
        ),
        (
            vec!["verify", input, "--out", out, "--level", "smtp"],
            2,
            "needs --from",
        ),
        (
            vec![
                "verify",
                input,
                "--out",
                out,
                "--level",
                "smtp",
                "--from",
                "me@@x.org",
            ],
            2,
            "not a usable address",
        ),
        (
            vec![
                "verify",
                input,
                "--out",
                out,
                "--level",
                "smtp",
                "--from",
                "me@x.org",
                "--helo",
                "bad name\r\nDATA",
            ],
            2,
            "HELO",
        ),
        (
            vec!["verify", input, "--dns-server", "dns.example"],
            2,
            "IP address",
        ),
        (
            vec!["verify", input, "--dns-timeout", "soon"],
            2,
            "invalid value",
        ),
        (
            vec!["verify", input, "--level", "bogus"],
            2,
            "invalid value",
        ),
        (
            vec!["verify", input, "--connect-timeout", "1ms"],
            2,
            "at least 10ms",
        ),
        (
            vec!["verify", input, "--reply-timeout", "11m"],
            2,
            "at most 10m",
        ),
        // The older name of --reply-timeout still works, with the same checks.
        (
            vec!["verify", input, "--smtp-timeout", "11m"],
            2,
            "at most 10m",
        ),
        (
            vec!["verify", input, "--delimiter", "ab"],
            2,
            "ASCII character",
        ),
        (
            vec!["verify", dir.path().to_str().unwrap(), "--level", "syntax"],
            2,
            "directory",
        ),
    ];
    for (args, code, needle) in cases {
        let o = run(&args, b"");
        assert_eq!(exit_code(&o), code, "{args:?}: {}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.contains(needle), "{args:?}: {msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }
    let priors = dir.path().join("p.toml");
    std::fs::write(&priors, "[reasons]\nsyntax-ok = 7\n").unwrap();
    let o = run(
        &[
            "verify",
            input,
            "--level",
            "syntax",
            "--priors",
            priors.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
}

#[test]
fn existing_output_needs_force() {
    let (_d, out, o) = verify_bytes(b"email\nann@acme.de\n", &[]);
    ok(&o);
    let input = out.parent().unwrap().join("list.csv");
    std::fs::write(&input, "email\nbob@acme.de\ncy@acme.de\n").unwrap();
    let args = [
        "verify",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--level",
        "syntax",
    ];
    let o = run(&args, b"");
    assert_eq!(exit_code(&o), 2);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        summary(&out)["rows"],
        1,
        "the refused run must not touch the old results"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&run(&forced, b""));
    assert_eq!(summary(&out)["rows"], 2);
}

#[test]
fn unwritable_output_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("l.csv");
    std::fs::write(&input, "email\nann@acme.de\n").unwrap();
    let o = run(
        &[
            "verify",
            input.to_str().unwrap(),
            "--level",
            "syntax",
            "--out",
            "/proc/prebounce-cannot-write-here",
        ],
        b"",
    );
    assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
}

#[test]
fn priors_file_changes_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let priors = dir.path().join("p.json");
    std::fs::write(&priors, r#"{"reasons": {"syntax-ok": 0.01}}"#).unwrap();
    let (_d, out, o) = verify_bytes(
        b"email\nann@acme.de\nbad\n",
        &["--priors", priors.to_str().unwrap()],
    );
    ok(&o);
    assert_eq!(column(&out, "valid.csv", "prebounce_bounce_p"), ["0.0100"]);
    let s = summary(&out);
    assert!((s["predicted_bounce_rate"]["all"].as_f64().unwrap() - 0.505).abs() < 1e-9);
    assert_eq!(s["predicted_bounce_rate"]["band"], "catastrophic");
    assert_eq!(s["predicted_bounce_rate"]["valid_only"], 0.01);
}

#[test]
fn reserved_domains_follow_the_flag() {
    let input = b"email\na@example.com\nb@mail.test\n";
    let (_d, out, o) = verify_bytes(input, &[]);
    ok(&o);
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["reserved-domain"; 2]
    );
    let (_d, out, o) = verify_bytes(input, &["--allow-reserved-domains"]);
    ok(&o);
    assert_eq!(summary(&out)["status"]["valid"], 2);
}

#[test]
fn the_samples_run_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (sample, rows) in [("samples/leads.csv", 2500), ("samples/headerless.csv", 40)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        let o = run(
            &[
                "verify",
                root.join(sample).to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--level",
                "syntax",
            ],
            b"",
        );
        ok(&o);
        let s = summary(&out);
        assert_eq!(s["rows"], rows, "{sample}");
        let listed: usize = LISTS.iter().map(|l| list_rows(&out, l).len()).sum();
        assert_eq!(listed, rows as usize, "{sample}");
    }
}

#[test]
fn explain_decodes_a_reply_as_json() {
    let o = run(
        &[
            "explain",
            "550-5.1.1 The email account that you tried to reach does not exist.\\n550 5.1.1 Please try - gsmtp",
        ],
        b"",
    );
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["code"], 550);
    assert_eq!(j["enhanced"], "5.1.1");
    assert_eq!(j["reason"], "mailbox-not-found");
    assert_eq!(j["status"], "invalid");
    assert_eq!(j["permanence"], "hard");
    let o = run(&["explain", "452 4.2.2 Mailbox full"], b"");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (j["reason"].as_str(), j["status"].as_str()),
        (Some("mailbox-full"), Some("unknown"))
    );
    let o = run(&["explain", "not an smtp reply"], b"");
    assert_eq!(exit_code(&o), 2);
    assert!(stderr(&o).contains("cannot decode"), "{}", stderr(&o));
}

/// A one-address list in `dir`, and a syntax-level run of it into `out` without a store.
fn one_address_list(dir: &std::path::Path) -> std::path::PathBuf {
    let list = dir.join("list.csv");
    std::fs::write(&list, "email\nann@gmail.com\n").unwrap();
    list
}

fn verify_syntax_into(
    list: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "verify",
        list.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--level",
        "syntax",
        "--no-store",
        "-q",
    ];
    args.extend_from_slice(extra);
    run(&args, b"")
}

/// Issue #14, item 2: a folder holding only `.partial` files is taken without --force, and links
/// planted there at the names prebounce once used for its temporary files, or at the names of
/// its outputs, must never be written through.
#[cfg(unix)]
#[test]
fn links_planted_in_the_output_folder_are_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let list = one_address_list(dir.path());
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for name in ["summary.json", "valid.csv", "report.html"] {
        std::os::unix::fs::symlink(&victim, out.join(format!(".{name}.partial"))).unwrap();
    }
    let o = verify_syntax_into(&list, &out, &[]);
    ok(&o);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // The planted links are gone, and every output is a file of its own.
    for entry in std::fs::read_dir(&out).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        assert!(
            meta.is_file(),
            "{:?} is not a plain file",
            entry.file_name()
        );
        assert!(!entry.file_name().to_string_lossy().ends_with(".partial"));
    }
    // A link at an output's own name, with --force: replaced, not followed.
    std::fs::remove_file(out.join("summary.json")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("summary.json")).unwrap();
    let o = verify_syntax_into(&list, &out, &["--force"]);
    ok(&o);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        std::fs::symlink_metadata(out.join("summary.json"))
            .unwrap()
            .is_file()
    );
}

/// Issue #14, item 2: another user's folder could hold links that user planted; prebounce
/// writes there only when --force says so.
#[cfg(unix)]
#[test]
fn an_output_folder_owned_by_another_user_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let list = one_address_list(dir.path());
    let out = dir.path().join("theirs");
    std::fs::create_dir(&out).unwrap();
    let me = std::fs::metadata(dir.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    // Only root can give a folder away; elsewhere there is nothing to test.
    if me != 0 || std::os::unix::fs::chown(&out, Some(65534), Some(65534)).is_err() {
        return;
    }
    let o = verify_syntax_into(&list, &out, &[]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("belongs to another user"),
        "{}",
        stderr(&o)
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing written"
    );
    ok(&verify_syntax_into(&list, &out, &["--force"]));
    assert!(out.join("valid.csv").is_file());
}

/// Issue #14, item 9: a run without a store writes no changes.csv, so an older run's one must
/// not stay beside the new lists.
#[test]
fn a_run_without_a_store_leaves_no_older_changes_csv_behind() {
    let dir = tempfile::tempdir().unwrap();
    let list = one_address_list(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("changes.csv"), "address,previous_status\n").unwrap();
    let o = verify_syntax_into(&list, &out, &["--force"]);
    ok(&o);
    assert!(!out.join("changes.csv").exists());
    assert!(out.join("valid.csv").is_file());
}

#[test]
fn the_smtp_timeouts_are_accepted_under_their_names() {
    for timeouts in [
        ["--connect-timeout", "2s", "--reply-timeout", "5s"],
        ["--connect-timeout", "2s", "--smtp-timeout", "5s"],
    ] {
        let (_dir, out, o) = verify_bytes(b"email\na@x.org\n", &timeouts);
        assert!(o.status.success(), "{timeouts:?}: {}", stderr(&o));
        assert_eq!(summary(&out)["rows"], 1);
    }
}

/// `preflight` refuses what it cannot check before asking the DNS anything: exit 2.
#[test]
fn preflight_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["preflight"], "--from"),
        (
            &[
                "preflight",
                "--domain",
                "example.org",
                "--dnsbl",
                "bl.example",
            ],
            "--from",
        ),
        (
            &[
                "preflight",
                "--domain",
                "example.org",
                "--dnsbl",
                "bl.example",
            ],
            "--from",
        ),
        (
            &["preflight", "--from", "not an address"],
            "not a usable address",
        ),
        (
            &["preflight", "--domain", "example.test"],
            "not a usable domain",
        ),
        (
            &[
                "preflight",
                "--domain",
                "example.org",
                "--source-ip",
                "127.0.0.1",
            ],
            "--from",
        ),
        (
            &[
                "preflight",
                "--from",
                "a@example.org",
                "--probe-target",
                "not a host!",
            ],
            "neither a host name nor an IP address",
        ),
        (
            &[
                "preflight",
                "--from",
                "a@example.org",
                "--connect-timeout",
                "soon",
            ],
            "--connect-timeout",
        ),
    ];
    for (args, says) in cases {
        let o = run(args, b"");
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
