//! Splitting a recording into documents, each with the line it starts on.
//!
//! Accepts what people actually have: JSON values one per line (`kubectl get -w -o json
//! --output-watch-events`, `eventspan record`), pretty-printed values back to back (`kubectl get
//! -o json`), or multi-document YAML. A broken value is reported with its line and skipped; the
//! next value is found again at the next line that starts with `{` in column 0 (pretty-printed
//! output indents everything inside a value).

use crate::wire::WireObject;

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

/// Parses the documents of `input`, in order, as they are read: a long recording is never held
/// parsed whole.
pub fn documents(input: &str) -> impl Iterator<Item = Result<Document, BadInput>> + '_ {
    let first = input.trim_start().chars().next();
    let (json, yaml) = if matches!(first, Some('{' | '[') | None) {
        (Some(JsonDocuments::new(input)), None)
    } else {
        (None, Some(yaml_documents(input)))
    };
    json.into_iter().flatten().chain(yaml.into_iter().flatten())
}

/// Counts lines up to a byte offset; offsets only grow, so the whole input is scanned once.
struct LineCounter<'a> {
    input: &'a [u8],
    offset: usize,
    line: usize,
}

impl LineCounter<'_> {
    fn line_at(&mut self, offset: usize) -> usize {
        debug_assert!(offset >= self.offset);
        // memchr looks at many bytes per instruction: byte by byte, counting lines took a
        // twentieth of replay.
        self.line += memchr::memchr_iter(b'\n', &self.input[self.offset..offset]).count();
        self.offset = offset;
        self.line
    }
}

/// JSON values back to back, parsed one at a time.
struct JsonDocuments<'a> {
    input: &'a str,
    lines: LineCounter<'a>,
    pos: usize,
    /// The rest of a `List` (a JSON array) already parsed.
    parsed: std::collections::VecDeque<Result<Document, BadInput>>,
}

impl<'a> JsonDocuments<'a> {
    fn new(input: &'a str) -> Self {
        JsonDocuments {
            input,
            lines: LineCounter {
                input: input.as_bytes(),
                offset: 0,
                line: 1,
            },
            pos: 0,
            parsed: Default::default(),
        }
    }

    /// Parses the next value (or array of values) into `parsed`; false at the end of input.
    fn parse_next(&mut self) -> bool {
        let (input, bytes) = (self.input, self.input.as_bytes());
        let Some(skip) = bytes[self.pos..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
        else {
            return false;
        };
        let start = self.pos + skip;
        let line = self.lines.line_at(start);
        let rest = &input[start..];
        let parsed = &mut self.parsed;
        let result = if bytes[start] == b'[' {
            parse_one::<Vec<WireObject>>(rest).map(|(values, len)| {
                parsed.extend(values.into_iter().map(|value| {
                    Ok(Document {
                        line,
                        value: Box::new(value),
                    })
                }));
                len
            })
        } else if bytes[start] == b'{' {
            parse_one::<Box<WireObject>>(rest).map(|(value, len)| {
                parsed.push_back(Ok(Document { line, value }));
                len
            })
        } else {
            let end = rest.find('\n').unwrap_or(rest.len());
            let reason = format!("expected a JSON object, found {:?}", truncate(&rest[..end]));
            Err((1, reason))
        };
        self.pos = match result {
            Ok(len) => start + len,
            Err((error_line, reason)) => {
                // Reported at the value's first line, where a reader starts looking.
                let at = line + error_line - 1;
                let reason = if at == line {
                    reason
                } else {
                    format!("{reason} (at line {at})")
                };
                parsed.push_back(Err(BadInput { line, reason }));
                // Resume at the next line that starts a value in column 0: pretty-printed output
                // indents everything inside a value.
                let resume = rest
                    .match_indices('\n')
                    .find(|(n, _)| matches!(rest.as_bytes().get(n + 1), Some(b'{' | b'[')));
                match resume {
                    Some((n, _)) => start + n + 1,
                    None => bytes.len(),
                }
            }
        };
        true
    }
}

impl Iterator for JsonDocuments<'_> {
    type Item = Result<Document, BadInput>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(document) = self.parsed.pop_front() {
                return Some(document);
            }
            if !self.parse_next() {
                return None;
            }
        }
    }
}

/// Parses the value at the start of `text`, returning it and how many bytes it took, or the
/// line of `text` where it broke and why.
fn parse_one<T: serde::de::DeserializeOwned>(text: &str) -> Result<(T, usize), (usize, String)> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    match stream.next() {
        Some(Ok(value)) => Ok((value, stream.byte_offset())),
        Some(Err(e)) if e.is_eof() => Err((1, "unterminated JSON value at end of input".into())),
        Some(Err(e)) => {
            let message = e.to_string();
            // serde_json appends a position relative to `text`; the caller reports the line.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            Err((e.line().max(1), message.to_string()))
        }
        None => Err((1, "empty input".into())),
    }
}

fn truncate(s: &str) -> &str {
    let s = s.trim();
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn yaml_documents(input: &str) -> Vec<Result<Document, BadInput>> {
    let mut out = Vec::new();
    let mut start_line = 1;
    let mut doc = String::new();
    let flush = |doc: &mut String, line: usize, out: &mut Vec<Result<Document, BadInput>>| {
        if doc
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            out.push(
                serde_saphyr::from_str::<Box<WireObject>>(doc)
                    .map(|value| Document { line, value })
                    .map_err(|e| BadInput {
                        line,
                        reason: e.to_string(),
                    }),
            );
        }
        doc.clear();
    };
    for (n, l) in input.lines().enumerate() {
        if l == "---" || l.starts_with("--- ") {
            flush(&mut doc, start_line, &mut out);
            start_line = n + 2;
        } else {
            doc.push_str(l);
            doc.push('\n');
        }
    }
    flush(&mut doc, start_line, &mut out);
    out
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
}
