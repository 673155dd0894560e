//! `hitcounter export` and `hitcounter import`: every counter out of the
//! record as JSON lines, and back in, from either store to either store.
//!
//! The export is one snapshot of the record read in pages (see
//! [`Store::export_each`]), so memory holds one page whatever the number of
//! counters, and a hit committed meanwhile is in it wholly or not at all.
//! Its first line names the format and its version, its last line counts the
//! counters: a file cut short is told from a whole one.
//!
//! The import reads JSON lines or a CSV `namespace,key,value` (counts from
//! CountAPI, Abacus or any other service), checks every line with the
//! rules the API applies ([`crate::counter`]), and writes batches of
//! counters, one transaction each: values are set, not added, and days are
//! upserted, so importing a file twice leaves the same record. A bad line
//! stops it with the line's number; its batch is not written, the batches
//! before it are. Every counter written starts a new epoch, as `/set` does,
//! so a value a running service's cache still holds is outranked by the
//! next commit; with Redis at hand the import raises the cache itself.
//!
//! This module owns the file format; it never names the web layer, the
//! engine or the writer.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::counter::{Bounds, CounterId, DayCount, MAX_MAGNITUDE, check_range};
use crate::store::{CounterDetails, CounterRecord, OnConflict, Store, StoreError};

/// The `format` of an export's first line.
pub const FORMAT: &str = "hitcounter-export";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// Counters read per page by the export. Measured on SQLite, 100,000
/// counters: pages of 1,000 export as fast as larger ones.
const EXPORT_PAGE: u32 = 1000;

/// What the input of `import` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// JSON lines when the first character is `{`, else CSV.
    Auto,
    /// An export of `hitcounter export`.
    Jsonl,
    /// `namespace,key,value` per line, with or without that header line.
    Csv,
}

/// What `import` does with a counter the record already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Conflict {
    /// The file wins: value, options and days are set from it.
    Overwrite,
    /// The record wins: the counter is left as it is.
    Skip,
}

#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub format: InputFormat,
    pub on_conflict: Conflict,
    /// Counters per transaction.
    pub batch: usize,
    /// Read and check every line, write nothing.
    pub dry_run: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Counters read from the input (a counter named twice counts twice).
    pub read: u64,
    /// Counters written to the record.
    pub written: u64,
    /// Counters the record held already, left alone (`--on-conflict skip`).
    pub skipped: u64,
    /// Why Redis could not be brought up to date, if it could not.
    pub cache_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A line of the input is wrong; nothing from `batch_start` on was written.
    #[error(
        "line {line}: {message} (nothing from line {batch_start} on was written{}; importing is idempotent: fix the input and run it again)",
        if *.written > 0 { format!("; the {} counters before it were", .written) } else { String::new() }
    )]
    Input {
        line: u64,
        message: String,
        batch_start: u64,
        written: u64,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot {what}: {error}")]
    Io {
        what: &'static str,
        error: std::io::Error,
    },
}

/// One line of an export after the header: a counter.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterLine {
    namespace: String,
    key: String,
    value: i64,
    enable_reset: bool,
    update_lowerbound: i64,
    update_upperbound: i64,
    /// SHA-256 of the admin key, hex; never the key.
    admin_key_hash: Option<String>,
    /// Unix milliseconds.
    created_ms: i64,
    /// Increments per UTC day (`YYYY-MM-DD`), oldest first.
    #[serde(default)]
    history: BTreeMap<String, i64>,
    /// The visitor sketch of each UTC day, as hex of the record's bytes
    /// (`crate::visitors::Sketch`: hashes under salts that are deleted, so
    /// nothing in it leads back to an address). Absent when there are none,
    /// so exports of counters without visitors read as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    visitor_sketches: BTreeMap<String, String>,
    /// Counts only each visitor's first hit of the UTC day (`/create`'s
    /// option); absent when false, so older exports read the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    first_hit_only: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    /// `YYYY-MM-DDTHH:MM:SSZ`, for people; nothing reads it.
    exported_at: String,
    /// The engine of the record it was read from, for people.
    source: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    /// Always [`FORMAT`]: the line that says the export is whole.
    end: String,
    counters: u64,
}

/// Writes every counter of `store` to `out` as JSON lines; returns how many.
pub async fn export(store: &Store, out: &mut (impl Write + Send)) -> Result<u64, TransferError> {
    let write_error = |error| TransferError::Io {
        what: "write the export",
        error,
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: now_utc(),
        source: store.kind().into(),
    };
    write_line(out, &header).map_err(write_error)?;
    let mut failed: Option<std::io::Error> = None;
    let exported = store
        .export_each(EXPORT_PAGE, |record| {
            let Some(details) = record.details else {
                return ControlFlow::Continue(());
            };
            let line = CounterLine {
                namespace: record.id.namespace,
                key: record.id.key,
                value: record.value,
                enable_reset: details.enable_reset,
                update_lowerbound: details.update_lowerbound,
                update_upperbound: details.update_upperbound,
                admin_key_hash: details.admin_key_hash,
                created_ms: details.created_ms,
                first_hit_only: details.first_hit_only,
                history: record
                    .history
                    .into_iter()
                    .map(|d| (d.day, d.hits))
                    .collect(),
                visitor_sketches: record
                    .visitors
                    .into_iter()
                    .map(|(day, sketch)| (day, hex::encode(sketch)))
                    .collect(),
            };
            match write_line(out, &line) {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => {
                    failed = Some(error);
                    ControlFlow::Break(())
                }
            }
        })
        .await?;
    if let Some(error) = failed {
        return Err(write_error(error));
    }
    let trailer = Trailer {
        end: FORMAT.into(),
        counters: exported,
    };
    write_line(out, &trailer).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(exported)
}

fn write_line(out: &mut impl Write, line: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Reads counters from `input` and writes them to `store` in batches; with
/// a `cache`, raises each written counter there too.
pub async fn import(
    store: &Store,
    cache: Option<&Cache>,
    input: impl BufRead,
    options: ImportOptions,
) -> Result<Imported, TransferError> {
    let mut input = input;
    let format = match options.format {
        InputFormat::Auto => sniff(&mut input).map_err(|error| TransferError::Io {
            what: "read the input",
            error,
        })?,
        given => given,
    };
    let mut source: Box<dyn Source> = match format {
        InputFormat::Csv => Box::new(CsvSource::new(input)),
        _ => Box::new(JsonlSource::new(input)),
    };
    let on_conflict = match options.on_conflict {
        Conflict::Overwrite => OnConflict::Overwrite,
        Conflict::Skip => OnConflict::Skip,
    };
    let mut done = Imported::default();
    let mut batch: BTreeMap<CounterId, CounterRecord> = BTreeMap::new();
    let mut batch_start = 0;
    loop {
        let next = source
            .next_record()
            .map_err(|(line, message)| TransferError::Input {
                line,
                message,
                batch_start: batch_start.max(1),
                written: done.written + done.skipped,
            })?;
        let end = next.is_none();
        if let Some((line, record)) = next {
            done.read += 1;
            if batch.is_empty() {
                batch_start = line;
            }
            // Named twice in one batch: the later line wins, as it would
            // across batches.
            batch.insert(record.id.clone(), record);
        }
        if batch.len() >= options.batch.max(1) || (end && !batch.is_empty()) {
            let records: Vec<CounterRecord> = std::mem::take(&mut batch).into_values().collect();
            if options.dry_run {
                done.written += records.len() as u64;
            } else {
                let written = store.import_batch(&records, on_conflict).await?;
                done.skipped += (records.len() - written.len()) as u64;
                done.written += written.len() as u64;
                if let Some(cache) = cache
                    && done.cache_error.is_none()
                    && let Err(error) = cache.raise(&written).await
                {
                    // One failure is enough to say so; the record is right,
                    // and every counter's next commit raises its entry.
                    done.cache_error = Some(error.to_string());
                }
            }
        }
        if end {
            return Ok(done);
        }
    }
}

/// JSON lines when the first character that is not white space (or a
/// byte-order mark) is `{`, else CSV. Consumes nothing.
fn sniff(input: &mut impl BufRead) -> std::io::Result<InputFormat> {
    let head = input.fill_buf()?;
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    Ok(match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => InputFormat::Jsonl,
        _ => InputFormat::Csv,
    })
}

/// Where records come from: the next one with its line number, or what is
/// wrong at which line.
trait Source {
    fn next_record(&mut self) -> Result<Option<(u64, CounterRecord)>, (u64, String)>;
}

struct JsonlSource<R> {
    input: R,
    line: u64,
    buf: String,
    counters: u64,
    ended: bool,
}

impl<R: BufRead> JsonlSource<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            buf: String::new(),
            counters: 0,
            ended: false,
        }
    }

    /// Reads the next line that is not blank into `buf`; false at the end
    /// of the input.
    fn next_line(&mut self) -> Result<bool, (u64, String)> {
        loop {
            self.buf.clear();
            let read = self
                .input
                .read_line(&mut self.buf)
                .map_err(|e| (self.line + 1, format!("cannot be read: {e}")))?;
            if read == 0 {
                return Ok(false);
            }
            self.line += 1;
            if !self.buf.trim().is_empty() {
                return Ok(true);
            }
        }
    }

    fn check_header(&mut self) -> Result<(), (u64, String)> {
        let expected = format!(
            "the first line must be the export's header, {{\"format\":\"{FORMAT}\",\"version\":{VERSION},...}} (for counts from another service use a CSV namespace,key,value)"
        );
        if !self.next_line()? {
            return Err((1, format!("the input is empty; {expected}")));
        }
        let (line, text) = (self.line, self.buf.trim());
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| (line, format!("not JSON ({e}); {expected}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err((line, expected));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => Ok(()),
            Some(v) => Err((
                line,
                format!(
                    "this export is version {v} of the format; this hitcounter reads version {VERSION}: import it with the hitcounter that wrote it or a newer one"
                ),
            )),
            None => Err((line, expected)),
        }
    }
}

impl<R: BufRead> Source for JsonlSource<R> {
    fn next_record(&mut self) -> Result<Option<(u64, CounterRecord)>, (u64, String)> {
        if self.line == 0 {
            self.check_header()?;
        }
        if !self.next_line()? {
            if self.ended {
                return Ok(None);
            }
            return Err((
                self.line + 1,
                format!(
                    "the export ends without its closing line {{\"end\":\"{FORMAT}\",...}}: it was cut short (the export failed, or the copy is incomplete)"
                ),
            ));
        }
        let (line, text) = (self.line, self.buf.trim());
        if self.ended {
            return Err((line, "text after the export's closing line".into()));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| (line, format!("not JSON: {e}")))?;
        if value.get("end").is_some() {
            let trailer: Trailer = serde_json::from_value(value)
                .map_err(|e| (line, format!("a wrong closing line: {e}")))?;
            if trailer.end != FORMAT || trailer.counters != self.counters {
                return Err((
                    line,
                    format!(
                        "the closing line counts {} counters, the export holds {}: it is not the file the export wrote",
                        trailer.counters, self.counters
                    ),
                ));
            }
            self.ended = true;
            return self.next_record();
        }
        let counter: CounterLine =
            serde_json::from_value(value).map_err(|e| (line, format!("not a counter: {e}")))?;
        self.counters += 1;
        let record = check_counter(counter).map_err(|message| (line, message))?;
        Ok(Some((line, record)))
    }
}

struct CsvSource<R> {
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    first: bool,
}

impl<R: std::io::Read> CsvSource<R> {
    fn new(input: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        Self {
            reader,
            record: csv::StringRecord::new(),
            first: true,
        }
    }
}

impl<R: std::io::Read> Source for CsvSource<R> {
    fn next_record(&mut self) -> Result<Option<(u64, CounterRecord)>, (u64, String)> {
        loop {
            let more = self.reader.read_record(&mut self.record).map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                (line, format!("not CSV: {e}"))
            })?;
            if !more {
                return Ok(None);
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let fields: Vec<&str> = self.record.iter().collect();
            let first = std::mem::replace(&mut self.first, false);
            if first
                && fields.len() == 3
                && fields
                    .iter()
                    .zip(["namespace", "key", "value"])
                    .all(|(f, name)| f.eq_ignore_ascii_case(name))
            {
                continue;
            }
            if fields.iter().all(|f| f.is_empty()) {
                continue;
            }
            let [namespace, key, value] = fields[..] else {
                return Err((
                    line,
                    format!(
                        "expected 3 fields, namespace,key,value; found {}",
                        fields.len()
                    ),
                ));
            };
            let value: i64 = value
                .parse()
                .map_err(|_| (line, format!("value must be a whole number, got {value:?}")))?;
            let record = check_value_only(namespace, key, value).map_err(|m| (line, m))?;
            return Ok(Some((line, record)));
        }
    }
}

/// A counter from a CSV: its name and value, checked as the API checks them.
fn check_value_only(namespace: &str, key: &str, value: i64) -> Result<CounterRecord, String> {
    let id = CounterId::parse(Some(namespace), key)?;
    let value = check_range("value", value).map_err(|r| r.to_string())?;
    Ok(CounterRecord {
        id,
        value,
        details: None,
        history: Vec::new(),
        visitors: Vec::new(),
    })
}

/// A counter from an export, checked with the rules `/create` applies.
/// The seed page's counter keeps its value and days, but may not carry an
/// admin key or `enable_reset` (either would let a stranger set the page).
fn check_counter(line: CounterLine) -> Result<CounterRecord, String> {
    let mut record = check_value_only(&line.namespace, &line.key, line.value)?;
    let bounds = Bounds::new(Some(line.update_lowerbound), Some(line.update_upperbound))
        .map_err(|r| r.to_string())?;
    if let Some(hash) = &line.admin_key_hash
        && !(hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(
            "admin_key_hash must be the key's SHA-256 as 64 lowercase hex digits (never the key itself)"
                .into(),
        );
    }
    if record.id == CounterId::seed_page() && (line.admin_key_hash.is_some() || line.enable_reset) {
        return Err(format!(
            "counter {} is the page at /: it may have neither an admin key nor enable_reset, as /create refuses to make it",
            record.id
        ));
    }
    if !(0..=MAX_MAGNITUDE).contains(&line.created_ms) {
        return Err(format!(
            "created_ms must be Unix milliseconds from 0 to {MAX_MAGNITUDE}, got {}",
            line.created_ms
        ));
    }
    for (day, hits) in &line.history {
        if !is_date(day) {
            return Err(format!(
                "history: {day:?} is not a day as YYYY-MM-DD (a real date)"
            ));
        }
        check_range(&format!("history's hits on {day}"), *hits).map_err(|r| r.to_string())?;
    }
    let mut visitors = Vec::with_capacity(line.visitor_sketches.len());
    for (day, sketch) in line.visitor_sketches {
        if !is_date(&day) {
            return Err(format!(
                "visitor_sketches: {day:?} is not a day as YYYY-MM-DD (a real date)"
            ));
        }
        let bytes = hex::decode(&sketch)
            .ok()
            .filter(|bytes| crate::visitors::Sketch::from_bytes(bytes).is_some())
            .ok_or_else(|| {
                format!("visitor_sketches on {day}: not a visitor sketch as hitcounter exports it")
            })?;
        visitors.push((day, bytes));
    }
    record.visitors = visitors;
    record.details = Some(CounterDetails {
        enable_reset: line.enable_reset,
        update_lowerbound: bounds.lower(),
        update_upperbound: bounds.upper(),
        admin_key_hash: line.admin_key_hash,
        created_ms: line.created_ms,
        first_hit_only: line.first_hit_only,
    });
    record.history = line
        .history
        .into_iter()
        .map(|(day, hits)| DayCount { day, hits })
        .collect();
    Ok(record)
}

/// Whether `text` is `YYYY-MM-DD` naming a real day of years 1000 to 9999.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        text[range.clone()]
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| text[range].parse::<u32>().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1000 && (1..=days_in_month).contains(&day)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (day, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        crate::store::format_day(day),
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(lines: &[&str]) -> Result<Vec<CounterRecord>, (u64, String)> {
        let text = lines.join("\n");
        let mut source = JsonlSource::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some((_, record)) = source.next_record()? {
            out.push(record);
        }
        Ok(out)
    }

    fn csv(text: &str) -> Result<Vec<(u64, CounterRecord)>, (u64, String)> {
        let mut source = CsvSource::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(next) = source.next_record()? {
            out.push(next);
        }
        Ok(out)
    }

    const HEADER: &str = r#"{"format":"hitcounter-export","version":1,"exported_at":"2026-11-27T16:00:00Z","source":"SQLite"}"#;
    const COUNTER: &str = r#"{"namespace":"mysite.com","key":"visits","value":42,"enable_reset":false,"update_lowerbound":0,"update_upperbound":1,"admin_key_hash":null,"created_ms":1764201600000,"history":{"2026-11-26":40,"2026-11-27":2}}"#;

    #[test]
    fn an_export_reads_back_with_its_options_and_days() {
        let end = r#"{"end":"hitcounter-export","counters":1}"#;
        let records = jsonl(&[HEADER, COUNTER, end, ""]).unwrap();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.id, CounterId::new("mysite.com", "visits"));
        assert_eq!(record.value, 42);
        assert_eq!(
            record.details.as_ref().unwrap().created_ms,
            1_764_201_600_000
        );
        assert_eq!(
            record.history,
            vec![
                DayCount {
                    day: "2026-11-26".into(),
                    hits: 40
                },
                DayCount {
                    day: "2026-11-27".into(),
                    hits: 2
                }
            ]
        );
    }

    #[test]
    fn bad_exports_are_refused_at_their_line_saying_why() {
        let end1 = r#"{"end":"hitcounter-export","counters":1}"#;
        let cases: &[(&[&str], u64, &str)] = &[
            (&[COUNTER], 1, "the first line must be the export's header"),
            (
                &[&HEADER.replace("\"version\":1", "\"version\":2"), COUNTER],
                1,
                "version 2",
            ),
            (&[HEADER, COUNTER], 3, "cut short"),
            (&[HEADER, "{not json", end1], 2, "not JSON"),
            (
                &[HEADER, &COUNTER.replace("visits", "a b"), end1],
                2,
                "key may contain only",
            ),
            (
                &[HEADER, &COUNTER.replace(":42", ":9007199254740992"), end1],
                2,
                "value must be between -9007199254740991 and 9007199254740991",
            ),
            (
                &[HEADER, &COUNTER.replace("\"value\":42,", ""), end1],
                2,
                "missing field `value`",
            ),
            (
                &[HEADER, &COUNTER.replace("2026-11-26", "2026-02-30"), end1],
                2,
                "not a day",
            ),
            (
                &[
                    HEADER,
                    &COUNTER.replace("upperbound\":1", "upperbound\":-1"),
                    end1,
                ],
                2,
                "must not be above update_upperbound",
            ),
            (
                &[HEADER, &COUNTER.replace("null", "\"hc_secret\""), end1],
                2,
                "never the key itself",
            ),
            (
                &[
                    HEADER,
                    &COUNTER
                        .replace("mysite.com", "default")
                        .replace("visits", "linode-page")
                        .replace("\"enable_reset\":false", "\"enable_reset\":true"),
                    end1,
                ],
                2,
                "the page at /",
            ),
            (
                &[
                    HEADER,
                    COUNTER,
                    r#"{"end":"hitcounter-export","counters":2}"#,
                ],
                3,
                "counts 2 counters",
            ),
            (
                &[HEADER, COUNTER, end1, COUNTER],
                4,
                "after the export's closing line",
            ),
        ];
        for (lines, line, says) in cases {
            let (at, message) = jsonl(lines).unwrap_err();
            assert_eq!(at, *line, "{message}");
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
    }

    #[test]
    fn csv_reads_with_or_without_a_header_and_refuses_bad_lines() {
        let with = csv("namespace,key,value\nmysite.com,visits,42\r\n\"other.org\",\"home\", 7 \n")
            .unwrap();
        assert_eq!(with.len(), 2);
        assert_eq!((with[0].0, with[0].1.value), (2, 42));
        assert_eq!(with[1].1.id, CounterId::new("other.org", "home"));
        assert!(with[1].1.details.is_none());
        let without = csv("mysite.com,visits,42\n").unwrap();
        assert_eq!(without[0].0, 1);

        for (text, line, says) in [
            (
                "mysite.com,visits,42\nmysite.com,visits\n",
                2,
                "expected 3 fields",
            ),
            ("mysite.com,visits,4.5\n", 1, "whole number"),
            ("ns,visits,1\n", 1, "namespace must be 3 to 64"),
            ("a,b,c\n", 1, "whole number"),
            (
                "mysite.com,visits,-9007199254740992\n",
                1,
                "value must be between",
            ),
        ] {
            let (at, message) = csv(text).unwrap_err();
            assert_eq!(at, line, "{message}");
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
    }

    #[test]
    fn the_format_is_told_by_the_first_character() {
        for (text, format) in [
            ("\u{feff}{\"format\"", InputFormat::Jsonl),
            ("\n  {", InputFormat::Jsonl),
            ("namespace,key,value", InputFormat::Csv),
            ("", InputFormat::Csv),
        ] {
            let mut input = text.as_bytes();
            assert_eq!(sniff(&mut input).unwrap(), format, "{text:?}");
        }
    }

    #[test]
    fn days_must_be_real_dates() {
        for day in ["2024-02-29", "2026-11-27", "1999-12-31"] {
            assert!(is_date(day), "{day}");
        }
        for day in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-11-27",
            "2026-11-27x",
            "+026-11-27",
        ] {
            assert!(!is_date(day), "{day}");
        }
    }
}
