//! Splitting a recording into documents, each with the line it starts on.
//!
//! Accepts what people actually have: JSON values one per line (`kubectl get -w -o json
//! --output-watch-events`, `eventspan record`), pretty-printed values back to back (`kubectl get
//! -o json`), or multi-document YAML. A broken value is reported with its line and skipped; the
//! next value is found again at the next line that starts with `{` or `[` in column 0
//! (pretty-printed output indents everything inside a value).
//!
//! The input is read as a stream: only the document being parsed is in memory, so a recording of
//! any length replays in the memory its longest document needs (at most [`MAX_DOCUMENT_BYTES`]).

use std::io::Read;

use crate::wire::WireObject;

/// The largest document read: a bigger one is reported and skipped, so that a value that never
/// closes cannot make replay hold the rest of the input. `kubectl get pods -A -o json` of a large
/// cluster (a `List` of 10,000 pods) is about a tenth of it.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 30;

/// How much is read from the input at a time.
const READ_CHUNK: usize = 256 << 10;

/// A parse failure, with the 1-based line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub line: usize,
    pub reason: String,
}

/// One parsed document of the input.
pub struct Document {
    pub line: usize,
    /// Boxed: a document passes through a queue and an iterator chain, and a WireObject is
    /// several hundred bytes.
    pub value: Box<WireObject>,
}

/// Parses the documents of an in-memory `input`, in order, as they are read.
pub fn documents(input: &str) -> Documents<&[u8]> {
    Documents::new(input.as_bytes())
}

/// The documents of a recording, parsed one at a time as the input is read. A read error ends
/// the documents; [`Documents::take_error`] tells it.
pub struct Documents<R> {
    source: Source<R>,
    format: Option<Format>,
    /// The rest of a `List` (a JSON array) already parsed.
    parsed: std::collections::VecDeque<Result<Document, BadInput>>,
    /// A YAML document being collected.
    yaml: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl<R: Read> Documents<R> {
    pub fn new(reader: R) -> Self {
        Documents {
            source: Source {
                reader,
                buf: Vec::new(),
                start: 0,
                line: 1,
                eof: false,
                error: None,
            },
            format: None,
            parsed: Default::default(),
            yaml: Vec::new(),
        }
    }

    /// The error that stopped reading, if one did (the documents before it were all yielded).
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.source.error.take()
    }

    /// JSON when the first character that is not white space opens a value (or there is none),
    /// else YAML.
    fn detect(&mut self) -> Format {
        let first = loop {
            let rest = &self.source.buf[self.source.start..];
            if let Some(&b) = rest.iter().find(|b| !b.is_ascii_whitespace()) {
                break Some(b);
            }
            if !self.source.fill() {
                break None;
            }
        };
        if matches!(first, Some(b'{' | b'[') | None) {
            Format::Json
        } else {
            Format::Yaml
        }
    }

    /// Parses the next JSON value (or array of values) into `parsed`; false at the end.
    fn next_json(&mut self) -> bool {
        let src = &mut self.source;
        if !src.skip_whitespace() {
            return false;
        }
        let line = src.line;
        let result = match src.buf[src.start] {
            b'{' => src
                .json_value()
                .map(|v| self.parsed.push_back(Ok(Document { line, value: v }))),
            b'[' => src.json_value::<Vec<WireObject>>().map(|values| {
                self.parsed.extend(values.into_iter().map(|value| {
                    Ok(Document {
                        line,
                        value: Box::new(value),
                    })
                }))
            }),
            _ => {
                let found = src.line_prefix(40);
                src.skip_to_value_line();
                Err(format!("expected a JSON object, found {:?}", found.trim()))
            }
        };
        if let Err(reason) = result {
            self.parsed.push_back(Err(BadInput { line, reason }));
        }
        true
    }

    /// Collects the next YAML document (up to a `---` line or the end) and parses it into
    /// `parsed`; false at the end.
    fn next_yaml(&mut self) -> bool {
        self.yaml.clear();
        let mut start_line = self.source.line;
        let mut too_large = false;
        loop {
            let at = self.source.line;
            let Some(line) = self.source.next_line() else {
                break;
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"---" || line.starts_with(b"--- ") {
                if self.yaml_document(start_line, too_large) {
                    return true;
                }
                start_line = at + 1;
                too_large = false;
                continue;
            }
            if self.yaml.len() + line.len() < MAX_DOCUMENT_BYTES {
                self.yaml.extend_from_slice(line);
                self.yaml.push(b'\n');
            } else {
                too_large = true;
            }
        }
        self.yaml_document(start_line, too_large)
    }

    /// Parses the collected YAML document into `parsed`, unless it is only blank lines and
    /// comments; true if it was a document.
    fn yaml_document(&mut self, line: usize, too_large: bool) -> bool {
        let text = String::from_utf8_lossy(&self.yaml);
        if !text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            self.yaml.clear();
            return false;
        }
        let result = if too_large {
            Err(format!(
                "a YAML document of more than {} MiB",
                MAX_DOCUMENT_BYTES >> 20
            ))
        } else {
            std::str::from_utf8(&self.yaml)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| {
                    serde_saphyr::from_str::<Box<WireObject>>(text).map_err(|e| e.to_string())
                })
        };
        self.parsed.push_back(
            result
                .map(|value| Document { line, value })
                .map_err(|reason| BadInput { line, reason }),
        );
        self.yaml.clear();
        true
    }
}

impl<R: Read> Iterator for Documents<R> {
    type Item = Result<Document, BadInput>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(document) = self.parsed.pop_front() {
                return Some(document);
            }
            let format = match self.format {
                Some(format) => format,
                None => {
                    let format = self.detect();
                    *self.format.insert(format)
                }
            };
            let more = match format {
                Format::Json => self.next_json(),
                Format::Yaml => self.next_yaml(),
            };
            if !more {
                return None;
            }
        }
    }
}

/// The input, read a chunk at a time into a buffer of which `buf[start..]` is not used yet.
struct Source<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    /// The line `buf[start]` is on.
    line: usize,
    eof: bool,
    error: Option<std::io::Error>,
}

/// How a JSON value's bytes ended.
enum End {
    /// Its closing bracket is at `len - 1`.
    Closed(usize),
    /// Cut at `len`: a line starting with `{` or `[` while the value was still open starts the
    /// next value.
    NextValue(usize),
    /// A string was still open at the end of a line, which JSON forbids; `len` includes the
    /// newline.
    OpenString(usize),
    /// The input ended with the value open.
    Unterminated,
    TooLarge,
}

impl<R: Read> Source<R> {
    /// Reads another chunk; false at the end of input (or on a read error, kept in `error`).
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        // What was used is dropped before the buffer grows: the buffer holds the current
        // document and at most one chunk beyond it.
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let read = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) => {
                self.buf.truncate(len + n);
                self.eof = n == 0;
            }
            Err(e) => {
                self.buf.truncate(len);
                self.error = Some(e);
                self.eof = true;
            }
        }
        !self.eof
    }

    /// Marks `n` more bytes as used, counting the lines they end.
    fn consume(&mut self, n: usize) {
        let used = &self.buf[self.start..self.start + n];
        // memchr looks at many bytes per instruction: byte by byte, counting lines took a
        // twentieth of replay.
        self.line += memchr::memchr_iter(b'\n', used).count();
        self.start += n;
    }

    /// The byte `n` past the unused start, reading more if needed.
    fn byte_at(&mut self, n: usize) -> Option<u8> {
        while self.start + n >= self.buf.len() {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf[self.start + n])
    }

    /// Skips white space; false if the input ends first.
    fn skip_whitespace(&mut self) -> bool {
        loop {
            let rest = &self.buf[self.start..];
            match rest.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(n) => {
                    self.consume(n);
                    return true;
                }
                None => {
                    self.consume(rest.len());
                    if !self.fill() {
                        return false;
                    }
                }
            }
        }
    }

    /// The start of the current line's rest, up to `chars` characters, for a message.
    fn line_prefix(&mut self, chars: usize) -> String {
        // A character is at most 4 bytes.
        let want = chars * 4;
        while self.buf.len() - self.start < want && !self.eof {
            self.fill();
        }
        let rest = &self.buf[self.start..(self.start + want).min(self.buf.len())];
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        String::from_utf8_lossy(line).chars().take(chars).collect()
    }

    /// Skips to the next line that starts with `{` or `[` (or the end), from inside a line.
    fn skip_to_value_line(&mut self) {
        loop {
            match memchr::memchr(b'\n', &self.buf[self.start..]) {
                Some(n) => {
                    self.consume(n + 1);
                    if matches!(self.byte_at(0), Some(b'{' | b'[') | None) {
                        return;
                    }
                }
                None => {
                    self.consume(self.buf.len() - self.start);
                    if !self.fill() {
                        return;
                    }
                }
            }
        }
    }

    /// The next line (without its newline), or `None` at the end.
    fn next_line(&mut self) -> Option<&[u8]> {
        let mut searched = 0;
        let len = loop {
            match memchr::memchr(b'\n', &self.buf[self.start + searched..]) {
                Some(n) => break Some(searched + n),
                None => {
                    searched = self.buf.len() - self.start;
                    if !self.fill() {
                        break None;
                    }
                }
            }
        };
        let start = self.start;
        match len {
            Some(len) => {
                self.consume(len + 1);
                Some(&self.buf[start..start + len])
            }
            None if self.start < self.buf.len() => {
                let end = self.buf.len();
                self.consume(end - start);
                Some(&self.buf[start..end])
            }
            None => None,
        }
    }

    /// Parses the JSON value that starts at the unused start, and uses its bytes. The error
    /// says why it broke, and at which line when not its first.
    fn json_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        // Nearly every recording has one value per line: parse the line as it is.
        if let Some(value) = self.whole_line() {
            return Ok(value);
        }
        let end = self.json_end();
        let len = match end {
            End::Closed(len) | End::NextValue(len) | End::OpenString(len) => len,
            End::Unterminated => self.buf.len() - self.start,
            End::TooLarge => {
                self.skip_to_value_line();
                return Err(format!(
                    "a JSON value of more than {} MiB",
                    MAX_DOCUMENT_BYTES >> 20
                ));
            }
        };
        let text = &self.buf[self.start..self.start + len];
        let result = serde_json::from_slice::<T>(text).map_err(|e| {
            let first_line = self.line;
            if e.is_eof() {
                match end {
                    End::NextValue(_) => format!(
                        "unterminated JSON value (the next starts at line {})",
                        first_line + memchr::memchr_iter(b'\n', text).count()
                    ),
                    _ => "unterminated JSON value at end of input".into(),
                }
            } else {
                let message = e.to_string();
                // serde_json appends a position relative to the value; the line is reported.
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m);
                let at = first_line + e.line().max(1) - 1;
                if at == first_line {
                    message.to_string()
                } else {
                    format!("{message} (at line {at})")
                }
            }
        });
        self.consume(len);
        // After a string open at the end of its line, the next line need not start a value.
        if matches!(end, End::OpenString(_)) && !matches!(self.byte_at(0), Some(b'{' | b'[') | None)
        {
            self.skip_to_value_line();
        }
        result
    }

    /// The value, if the rest of the current line is exactly one valid value.
    fn whole_line<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let mut searched = 0;
        let len = loop {
            match memchr::memchr(b'\n', &self.buf[self.start + searched..]) {
                Some(n) => break searched + n,
                None if self.eof => break self.buf.len() - self.start,
                None => {
                    searched = self.buf.len() - self.start;
                    if searched > MAX_DOCUMENT_BYTES {
                        return None;
                    }
                    self.fill();
                }
            }
        };
        let value = serde_json::from_slice(&self.buf[self.start..self.start + len]).ok()?;
        self.consume(len);
        Some(value)
    }

    /// Finds where the value at the unused start ends, tracking brackets outside strings.
    fn json_end(&mut self) -> End {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut n = 0;
        loop {
            if self.start + n >= self.buf.len() {
                if n > MAX_DOCUMENT_BYTES {
                    return End::TooLarge;
                }
                if !self.fill() {
                    return End::Unterminated;
                }
                continue;
            }
            let b = self.buf[self.start + n];
            n += 1;
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    b'\n' => return End::OpenString(n),
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return End::Closed(n);
                    }
                }
                b'\n' if matches!(self.byte_at(n), Some(b'{' | b'[')) => return End::NextValue(n),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &str) -> Vec<Result<usize, usize>> {
        documents(input)
            .map(|d| d.map(|d| d.line).map_err(|e| e.line))
            .collect()
    }

    #[test]
    fn one_value_per_line_and_pretty_printed() {
        let input = "{\"kind\":\"Pod\"}\n{\"kind\":\"Pod\"}\n\n{\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"a}\"}\n}\n";
        assert_eq!(lines_of(input), vec![Ok(1), Ok(2), Ok(4)]);
    }

    #[test]
    fn broken_values_are_reported_and_skipped() {
        let input = "{\"kind\":\"Pod\"}\n{\"kind\":\"Po\n{\"kind\":\"Pod\"}\ngarbage\n{\"kind\": 3}\n{\"kind\":\"Pod\",\n";
        assert_eq!(
            lines_of(input),
            vec![Ok(1), Err(2), Ok(3), Err(4), Err(5), Err(6)]
        );
    }

    #[test]
    fn truncated_pretty_value_recovers_at_next_top_level_brace() {
        let input = "{\n  \"kind\": \"Pod\",\n  \"metadata\": {\n{\n  \"kind\": \"Pod\"\n}\n";
        assert_eq!(lines_of(input), vec![Err(1), Ok(4)]);
        let reasons: Vec<String> = documents(input)
            .filter_map(|d| d.err())
            .map(|e| e.reason)
            .collect();
        assert_eq!(
            reasons,
            ["unterminated JSON value (the next starts at line 4)"]
        );
    }

    #[test]
    fn arrays_and_yaml() {
        assert_eq!(
            lines_of("[{\"kind\":\"Pod\"},{\"kind\":\"Pod\"}]"),
            vec![Ok(1), Ok(1)]
        );
        let yaml = "kind: Pod\nmetadata:\n  name: a\n---\n# comment only\n---\nkind: Pod\nmetadata: [\n---\nkind: Pod\n";
        assert_eq!(lines_of(yaml), vec![Ok(1), Err(7), Ok(10)]);
    }

    #[test]
    fn values_across_read_chunks_and_several_on_a_line() {
        // Values longer than a read chunk, pretty-printed and not, and two on one line.
        let long = "x".repeat(READ_CHUNK + 17);
        let line = format!("{{\"kind\":\"Pod\",\"metadata\":{{\"name\":\"{long}\"}}}}");
        let pretty =
            format!("{{\n  \"kind\": \"Pod\",\n  \"metadata\": {{\"name\": \"{long}\"}}\n}}");
        let input = format!("{line}\n{pretty}\n{{\"kind\":\"Pod\"}} {{\"kind\":\"Pod\"}}\n{line}");
        assert_eq!(lines_of(&input), vec![Ok(1), Ok(2), Ok(6), Ok(6), Ok(7)]);
        let names: Vec<usize> = documents(&input)
            .map(|d| d.unwrap().value.metadata.name.len())
            .collect();
        assert_eq!(names, [long.len(), long.len(), 0, 0, long.len()]);
    }

    #[test]
    fn errors_name_the_line_they_are_on() {
        let input = "{\n  \"kind\": \"Pod\",\n  \"metadata\": 7\n}\n{\"kind\":\"Pod\"}\n";
        let out: Vec<Result<usize, BadInput>> =
            documents(input).map(|d| d.map(|d| d.line)).collect();
        let Err(bad) = &out[0] else { panic!("{out:?}") };
        assert_eq!(bad.line, 1);
        assert!(bad.reason.ends_with("(at line 3)"), "{}", bad.reason);
        assert_eq!(out[1], Ok(5));
    }

    /// Input that fails to read part-way: what came before is used, the error is kept.
    struct FailsAfter(&'static [u8]);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_ends_the_documents_and_is_kept() {
        let mut docs = Documents::new(FailsAfter(b"{\"kind\":\"Pod\"}\n{\"kind\":\"Pod\"}\n"));
        assert_eq!(docs.by_ref().filter(|d| d.is_ok()).count(), 2);
        assert_eq!(docs.take_error().unwrap().to_string(), "disk on fire");
    }
}
