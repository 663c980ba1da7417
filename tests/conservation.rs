//! Property: whatever the input, the four lists together hold exactly the input's data rows,
//! each once, in input order within each list, with the original cells byte for byte.

mod common;

use std::path::Path;

use proptest::prelude::*;

use common::{APPENDED, LISTS, read_records};
use prebounce::input::{InputOptions, InputSource};
use prebounce::{Level, VerifyConfig};

/// Runs `verify`; None when the input is refused by design (UTF-16), which the caller checks.
fn run_lib(input: &[u8], options: InputOptions) -> Option<(tempfile::TempDir, prebounce::Summary)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, input).unwrap();
    let config = VerifyConfig {
        input_options: options,
        level: Level::Syntax,
        threads: Some(2),
        ..VerifyConfig::new(InputSource::File(path), dir.path().join("out"))
    };
    match prebounce::verify(&config) {
        Ok(summary) => Some((dir, summary)),
        Err(prebounce::Error::Input(prebounce::input::InputError::Utf16)) => None,
        Err(e) => panic!("verify failed on bad rows: {e}"),
    }
}

/// Data rows of the four lists (original cells only: all but the appended ones at the end,
/// which is where they are in a ragged row too), each tagged with its list and reason.
fn output_rows(out: &Path) -> Vec<(usize, Vec<Vec<u8>>, String)> {
    let mut rows = Vec::new();
    for (i, list) in LISTS.iter().enumerate() {
        let mut recs = read_records(&out.join(list), b',');
        recs.remove(0);
        for r in recs {
            assert!(
                r.len() > APPENDED,
                "row without its own cells in {list}: {r:?}"
            );
            let own = r.len() - APPENDED;
            rows.push((
                i,
                r[..own].to_vec(),
                String::from_utf8_lossy(&r[own + 1]).into_owned(),
            ));
        }
    }
    rows
}

fn cell() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Address-like text, with the characters that matter to CSV and to the checker.
        "[a-zA-Z0-9@.,;\" \\n\\r|é+-]{0,16}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Well-formed CSV with arbitrary cell bytes: every row comes back exactly once.
    #[test]
    fn well_formed_rows_are_conserved(
        width in 1usize..5,
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 5), 0..40),
    ) {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let mut header: Vec<Vec<u8>> = vec![b"email".to_vec()];
        header.extend((1..width).map(|i| format!("c{i}").into_bytes()));
        header.push(b"row_id".to_vec());
        w.write_record(&header).unwrap();
        let mut expected = Vec::new();
        for (id, r) in rows.iter().enumerate() {
            let mut rec: Vec<Vec<u8>> = r[..width].to_vec();
            rec.push(id.to_string().into_bytes());
            w.write_record(&rec).unwrap();
            expected.push(rec);
        }
        let input = w.into_inner().unwrap();
        let (dir, summary) = run_lib(&input, InputOptions {
            column: Some("email".into()),
            delimiter: Some(b','),
            no_header: false,
        })
        .expect("a CSV that starts with an email header is not UTF-16");
        let got = output_rows(&dir.path().join("out"));
        prop_assert_eq!(summary.rows as usize, expected.len());
        prop_assert_eq!(got.len(), expected.len());
        let mut last_id = [None::<usize>; 4];
        let mut seen = vec![false; expected.len()];
        for (list, rec, _) in got {
            let id: usize = String::from_utf8(rec[width].clone()).unwrap().parse().unwrap();
            prop_assert_eq!(&rec, &expected[id]);
            prop_assert!(!seen[id], "row {} twice", id);
            seen[id] = true;
            prop_assert!(last_id[list] < Some(id), "list {} out of order", list);
            last_id[list] = Some(id);
        }
    }

    /// Arbitrary bytes (no quotes, so the csv crate is a fair oracle for where rows are).
    #[test]
    fn arbitrary_unquoted_bytes_are_conserved(input in proptest::collection::vec(
        prop_oneof![Just(b','), Just(b'\n'), Just(b'\r'), Just(b'@'), Just(b'.'), Just(0xffu8), Just(0xc3u8), any::<u8>()
            .prop_filter("no quotes", |b| *b != b'"')],
        0..300,
    )) {
        let oracle: Vec<Vec<Vec<u8>>> = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&input[..])
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect();
        let Some((dir, summary)) = run_lib(&input, InputOptions {
            column: Some("1".into()),
            delimiter: Some(b','),
            no_header: true,
        }) else {
            // Refused as UTF-16: only a byte-order mark or NUL-interleaved text may be.
            prop_assert!(input.starts_with(&[0xFF, 0xFE]) || input.starts_with(&[0xFE, 0xFF]) || input.contains(&0));
            return Ok(());
        };
        prop_assert_eq!(summary.rows as usize, oracle.len());
        let got = output_rows(&dir.path().join("out"));
        prop_assert_eq!(got.len(), oracle.len());
        // Every row comes back with its own cells byte for byte, however many it has (a ragged
        // row is not cut or padded); only an email cell that is not UTF-8 makes it unreadable.
        let mut expected: Vec<&Vec<Vec<u8>>> = oracle.iter().collect();
        let mut returned: Vec<&Vec<Vec<u8>>> = got.iter().map(|(_, r, _)| r).collect();
        for (_, r, reason) in &got {
            prop_assert_eq!(
                reason == "unreadable-row",
                std::str::from_utf8(&r[0]).is_err(),
                "{:?}: {}", r, reason
            );
        }
        expected.sort();
        returned.sort();
        prop_assert_eq!(returned, expected);
    }
}
