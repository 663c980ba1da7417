//! Output stage: the four lists, report.html and summary.json, written under temporary names
//! and renamed only when the run completes, so a failed run never leaves files that look
//! finished.

pub mod bounce_report;
pub mod report;
pub mod summary;
pub mod table;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::input::InputSource;
use crate::model::Status;

/// Columns appended to every output row, in this order.
pub const APPENDED_COLUMNS: [&str; 9] = [
    "prebounce_status",
    "prebounce_reason",
    "prebounce_detail",
    "prebounce_normalized",
    "prebounce_suggestion",
    "prebounce_flags",
    "prebounce_bounce_p",
    "prebounce_mx",
    "prebounce_provider",
];

pub const SUMMARY_FILE: &str = "summary.json";
pub const REPORT_FILE: &str = "report.html";
/// Addresses whose status changed since their previous verification (runs with a store).
pub const CHANGES_FILE: &str = "changes.csv";
/// Every file a run may write into its output folder.
const OUTPUT_FILES: [&str; 7] = [
    "valid.csv",
    "invalid.csv",
    "catch-all.csv",
    "unknown.csv",
    REPORT_FILE,
    SUMMARY_FILE,
    CHANGES_FILE,
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    #[error(
        "output folder {0} already exists and is not empty; pass --force to replace its files, or choose another with --out"
    )]
    Exists(PathBuf),
    #[error("output path {0} exists and is not a folder; choose another with --out")]
    NotADirectory(PathBuf),
    #[error(
        "output folder {0} belongs to another user; choose another with --out, or pass --force to write there anyway"
    )]
    NotOwned(PathBuf),
    #[error("cannot write to {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `<input-stem>.prebounce/` beside the input; `./prebounce-out/` for standard input.
pub fn default_out_dir(input: &InputSource) -> PathBuf {
    match input {
        InputSource::Stdin => PathBuf::from("prebounce-out"),
        InputSource::File(path) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "input".into());
            path.with_file_name(format!("{stem}.prebounce"))
        }
    }
}

pub fn list_file_name(status: Status) -> &'static str {
    match status {
        Status::Valid => "valid.csv",
        Status::Invalid => "invalid.csv",
        Status::CatchAll => "catch-all.csv",
        Status::Unknown => "unknown.csv",
    }
}

/// Create the output folder, refusing to mix a new run into an old one, or to write into a
/// folder another user owns (who could plant links there), unless `force`.
pub fn prepare_out_dir(dir: &Path, force: bool) -> Result<(), OutputError> {
    // symlink_metadata: a link named like the folder is not a folder we were asked to use.
    match fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(OutputError::NotADirectory(dir.to_owned())),
        Ok(meta) => {
            if !force && !owned_by_us(&meta) {
                return Err(OutputError::NotOwned(dir.to_owned()));
            }
            // A killed run leaves its hidden `.<file>.….partial` files: they do not make the
            // folder used (the same command, run again, resumes) and are removed.
            let mut used = false;
            for entry in fs::read_dir(dir)
                .map_err(io_err(dir))?
                .filter_map(Result::ok)
            {
                let name = entry.file_name();
                match name.to_str().filter(|n| is_partial(n)) {
                    // remove_file removes a link itself, never what it points to.
                    Some(_) => fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?,
                    None => used = true,
                }
            }
            if used && !force {
                return Err(OutputError::Exists(dir.to_owned()));
            }
        }
        Err(_) => fs::create_dir_all(dir).map_err(io_err(dir))?,
    }
    Ok(())
}

#[cfg(unix)]
fn owned_by_us(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == rustix::process::geteuid().as_raw()
}

#[cfg(not(unix))]
fn owned_by_us(_: &fs::Metadata) -> bool {
    true
}

/// A temporary file of ours: `.<one of our file names>.<anything>.partial`.
fn is_partial(name: &str) -> bool {
    OUTPUT_FILES.iter().any(|f| {
        name.strip_prefix('.')
            .and_then(|n| n.strip_prefix(f))
            .is_some_and(|rest| rest.ends_with(".partial"))
    })
}

/// A file written under a fresh hidden name (`.<name>.<random>.partial`, created exclusively, so
/// a link planted there is never followed) and renamed into place on `commit`; removed on drop
/// if `commit` was never tried.
struct PendingFile {
    temp: Option<tempfile::TempPath>,
    target: PathBuf,
}

impl PendingFile {
    fn create(dir: &Path, name: &str) -> Result<(Self, File), OutputError> {
        let named = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(output_permissions())
            .tempfile_in(dir)
            .map_err(io_err(dir))?;
        let (file, temp) = named.into_parts();
        let pending = PendingFile {
            temp: Some(temp),
            target: dir.join(name),
        };
        Ok((pending, file))
    }

    fn temp_path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.target)
    }

    fn commit(&mut self) -> Result<(), OutputError> {
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        // Renamed over an older list, ext4 allocates the new file's blocks and starts writing
        // it out before `rename` returns (its safeguard for programs that never sync): 0.2 s
        // for a 200 MB list, at the end of every run into the same folder. The older list is
        // removed first instead (a link there is removed itself, not followed). A run killed
        // in between leaves the new list under its temporary name, and the same command, run
        // again, writes it again.
        match fs::remove_file(&self.target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(&self.target)(e));
            }
            _ => {}
        }
        // rename replaces whatever is at the target, a link included, without following it.
        temp.persist(&self.target).map_err(|e| {
            // Failed with the older list gone: the new one stays under its temporary name
            // rather than both being lost.
            let _ = e.path.keep();
            io_err(&self.target)(e.error)
        })
    }
}

/// Write whole files into `dir` (created if missing) the way the lists are written: each under
/// a fresh exclusive temporary name, then renamed over the target, so a link planted at a name
/// is replaced, never followed. A folder another user owns is refused unless `force`; other
/// files in it are left alone.
pub fn write_files(dir: &Path, force: bool, files: &[(&str, &[u8])]) -> Result<(), OutputError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(OutputError::NotADirectory(dir.to_owned())),
        Ok(meta) if !force && !owned_by_us(&meta) => {
            return Err(OutputError::NotOwned(dir.to_owned()));
        }
        Ok(_) => {}
        Err(_) => fs::create_dir_all(dir).map_err(io_err(dir))?,
    }
    for (name, bytes) in files {
        let (mut pending, mut file) = PendingFile::create(dir, name)?;
        file.write_all(bytes)
            .and_then(|()| file.flush())
            .map_err(io_err(pending.temp_path()))?;
        drop(file);
        pending.commit()?;
    }
    Ok(())
}

/// The lists' mode before the umask, as `File::create` gives (tempfile's own default is 0600).
fn output_permissions() -> fs::Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(0o666)
    }
    #[cfg(not(unix))]
    {
        tempfile::NamedTempFile::new()
            .and_then(|f| f.as_file().metadata())
            .map(|m| m.permissions())
            .expect("a temporary file")
    }
}

/// The four CSV lists of one run. Rows arrive already serialised (the pipeline formats them in
/// parallel); this only appends bytes, in order.
pub struct ListWriters {
    dir: PathBuf,
    writers: Vec<BufWriter<File>>,
    files: Vec<PendingFile>,
}

/// Appends CSV fields, quoted only when they must be: when one holds the delimiter, a quote or a
/// line break (the csv crate's `QuoteStyle::Necessary`). Hand-written because rows are built
/// from pre-encoded input bytes plus these fields, which a csv::Writer cannot splice; the
/// round-trip test below holds it to the csv crate's reading.
pub struct FieldEncoder {
    delimiter: u8,
    /// Bytes that force quoting, as a table: this runs on every byte of every appended cell.
    special: [bool; 256],
}

impl FieldEncoder {
    pub fn new(delimiter: u8) -> Self {
        let mut special = [false; 256];
        for b in [delimiter, b'"', b'\n', b'\r'] {
            special[b as usize] = true;
        }
        FieldEncoder { delimiter, special }
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    pub fn push(&self, out: &mut Vec<u8>, field: &[u8]) {
        if !field.iter().any(|&b| self.special[b as usize]) {
            out.extend_from_slice(field);
            return;
        }
        out.reserve(field.len() + 2);
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    }
}

/// A list's write buffer. Smaller than a batch of a thousand rows (about 120 KB), so those go
/// to the file straight from the batch instead of through a copy into the buffer (the lists are
/// twice the input's size: that copy was a tenth of the writer thread's time); a few rows of
/// a small list are still gathered.
const LIST_BUFFER: usize = 64 * 1024;

/// A CSV writer over a byte buffer with the run's dialect, for serialising rows.
pub fn row_serializer(delimiter: u8, capacity: usize) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .buffer_capacity(8 * 1024)
        .from_writer(Vec::with_capacity(capacity))
}

/// Finish a serialiser and take its bytes.
pub fn serialized_bytes(w: csv::Writer<Vec<u8>>) -> Vec<u8> {
    // Flushing into a Vec cannot fail.
    w.into_inner()
        .unwrap_or_else(|e| e.into_inner().get_ref().clone())
}

impl ListWriters {
    /// Open the four lists and write their header row (input header + appended columns).
    pub fn create(dir: &Path, delimiter: u8, header: &[Vec<u8>]) -> Result<Self, OutputError> {
        let mut header_row = row_serializer(delimiter, 256);
        let names = header
            .iter()
            .map(Vec::as_slice)
            .chain(APPENDED_COLUMNS.iter().map(|c| c.as_bytes()));
        header_row
            .write_record(names)
            .map_err(|e| csv_err(dir, e))?;
        let header_bytes = serialized_bytes(header_row);
        let mut writers = Vec::with_capacity(4);
        let mut files = Vec::with_capacity(4);
        for status in Status::ALL {
            let (pending, file) = PendingFile::create(dir, list_file_name(status))?;
            let mut w = BufWriter::with_capacity(LIST_BUFFER, file);
            w.write_all(&header_bytes)
                .map_err(io_err(pending.temp_path()))?;
            files.push(pending);
            writers.push(w);
        }
        Ok(ListWriters {
            dir: dir.to_owned(),
            writers,
            files,
        })
    }

    /// Append serialised rows to the list of `status`.
    pub fn write(&mut self, status: Status, rows: &[u8]) -> Result<(), OutputError> {
        let i = status.index();
        self.writers[i]
            .write_all(rows)
            .map_err(io_err(self.files[i].temp_path()))
    }

    /// Opens changes.csv beside the lists, written as the run goes ([`write_changes`]) rather
    /// than gathered in memory: a revalidation can change millions of rows.
    ///
    /// [`write_changes`]: Self::write_changes
    pub fn open_changes(&mut self, header: &[u8]) -> Result<(), OutputError> {
        let (pending, file) = PendingFile::create(&self.dir, CHANGES_FILE)?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        w.write_all(header).map_err(io_err(pending.temp_path()))?;
        self.files.push(pending);
        self.writers.push(w);
        Ok(())
    }

    /// Append changes.csv rows (after [`open_changes`](Self::open_changes); ignored without).
    pub fn write_changes(&mut self, rows: &[u8]) -> Result<(), OutputError> {
        let i = Status::ALL.len();
        match self.writers.get_mut(i) {
            Some(w) => w.write_all(rows).map_err(io_err(self.files[i].temp_path())),
            None => Ok(()),
        }
    }

    /// Write a whole extra file, renamed into place with the others on `commit`.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let (pending, mut file) = PendingFile::create(&self.dir, name)?;
        file.write_all(bytes).map_err(io_err(pending.temp_path()))?;
        self.files.push(pending);
        Ok(())
    }

    /// Flush everything, write report.html and summary.json, then rename all files into place,
    /// summary.json last.
    ///
    /// Renaming only complete files protects against a crashed or killed run. The files are not
    /// fsynced: that cost a third of a million-row run (0.39 s of 1.3 s) for protection against
    /// a power cut in the seconds after it, when running again is the remedy.
    pub fn commit(mut self, report_html: &[u8], summary_json: &[u8]) -> Result<(), OutputError> {
        for (w, f) in self.writers.drain(..).zip(&self.files) {
            w.into_inner().map_err(|e| OutputError::Io {
                path: f.temp_path().to_owned(),
                source: e.into_error(),
            })?;
        }
        self.add_file(REPORT_FILE, report_html)?;
        let (mut summary, mut file) = PendingFile::create(&self.dir, SUMMARY_FILE)?;
        file.write_all(summary_json)
            .map_err(io_err(summary.temp_path()))?;
        // summary.json marks a finished run: remove the old one first, put the new one in last.
        let _ = fs::remove_file(&summary.target);
        for f in &mut self.files {
            f.commit()?;
        }
        // An older run's output that this one does not write (changes.csv without a store)
        // goes too, so the folder never mixes two runs.
        for name in OUTPUT_FILES {
            let path = self.dir.join(name);
            if name == SUMMARY_FILE || self.files.iter().any(|f| f.target == path) {
                continue;
            }
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
        }
        summary.commit()
    }
}

fn csv_err(path: &Path, e: csv::Error) -> OutputError {
    OutputError::Io {
        path: path.to_owned(),
        source: match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => io::Error::other(format!("{other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_the_csv_crate() {
        let fields: [&[u8]; 7] = [
            b"plain",
            b"with,comma",
            b"with \"quote\"",
            b"line\nbreak",
            b"cr\r",
            b"",
            b"semi;colon",
        ];
        for delimiter in [b',', b';', b'\t', b'|'] {
            let mut out = Vec::new();
            let enc = FieldEncoder::new(delimiter);
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(delimiter);
                }
                enc.push(&mut out, f);
            }
            out.push(b'\n');
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(&out[..]);
            let rec = r.byte_records().next().unwrap().unwrap();
            let got: Vec<&[u8]> = rec.iter().collect();
            assert_eq!(got, fields, "delimiter {}", delimiter as char);
        }
    }

    #[test]
    fn default_dirs() {
        assert_eq!(
            default_out_dir(&InputSource::File("/data/leads.csv".into())),
            PathBuf::from("/data/leads.prebounce")
        );
        assert_eq!(
            default_out_dir(&InputSource::Stdin),
            PathBuf::from("prebounce-out")
        );
    }

    #[test]
    fn uncommitted_files_disappear() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = ListWriters::create(dir.path(), b',', &[b"email".to_vec()]).unwrap();
            w.write(Status::Valid, b"a@b.com\n").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_a_used_folder_without_force() {
        let dir = tempfile::tempdir().unwrap();
        prepare_out_dir(dir.path(), false).unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        assert!(matches!(
            prepare_out_dir(dir.path(), false),
            Err(OutputError::Exists(_))
        ));
        prepare_out_dir(dir.path(), true).unwrap();
    }
}
