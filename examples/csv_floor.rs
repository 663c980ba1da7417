//! The speed floor prebounce is compared with: read every record of a CSV with the csv crate and
//! write it back, nothing else. `cargo run --release --example csv_floor -- IN OUT`

use std::fs::File;
use std::io::{BufReader, BufWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: csv_floor IN OUT");
        std::process::exit(2);
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(256 * 1024, File::open(input)?));
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::with_capacity(256 * 1024, File::create(output)?));
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while r.read_byte_record(&mut rec)? {
        w.write_byte_record(&rec)?;
        n += 1;
    }
    w.flush()?;
    eprintln!("{n} records");
    Ok(())
}
