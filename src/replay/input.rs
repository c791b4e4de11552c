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
    pub value: WireObject,
}

/// Parses every document of `input`, in order.
pub fn documents(input: &str) -> Vec<Result<Document, BadInput>> {
    let first = input.trim_start().chars().next();
    if matches!(first, Some('{' | '[') | None) {
        json_documents(input)
    } else {
        yaml_documents(input)
    }
}

fn json_documents(input: &str) -> Vec<Result<Document, BadInput>> {
    let mut out = Vec::new();
    for segment in split_json(input) {
        match segment {
            Ok((line, text)) => parse_json(line, text, &mut out),
            Err(bad) => out.push(Err(bad)),
        }
    }
    out
}

fn parse_json(line: usize, text: &str, out: &mut Vec<Result<Document, BadInput>>) {
    let located = |e: serde_json::Error| BadInput {
        line: line + e.line().saturating_sub(1),
        reason: e.to_string(),
    };
    if text.starts_with('[') {
        match serde_json::from_str::<Vec<WireObject>>(text) {
            Ok(values) => out.extend(values.into_iter().map(|value| Ok(Document { line, value }))),
            Err(e) => out.push(Err(located(e))),
        }
    } else {
        out.push(
            serde_json::from_str::<WireObject>(text)
                .map(|value| Document { line, value })
                .map_err(located),
        );
    }
}

/// Finds the top-level JSON values of `input` by bracket depth, without parsing them.
fn split_json(input: &str) -> Vec<Result<(usize, &str), BadInput>> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // The value being scanned: (start offset, start line).
    let mut current: Option<(usize, usize)> = None;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    while i < bytes.len() {
        let b = bytes[i];
        match current {
            None => {
                if b == b'{' || b == b'[' {
                    current = Some((i, line));
                    depth = 1;
                } else if b == b'\n' {
                    line += 1;
                } else if !b.is_ascii_whitespace() {
                    let end = input[i..].find('\n').map_or(bytes.len(), |n| i + n);
                    out.push(Err(BadInput {
                        line,
                        reason: format!(
                            "expected a JSON object, found {:?}",
                            truncate(&input[i..end])
                        ),
                    }));
                    i = end;
                    continue;
                }
            }
            Some((start, start_line)) => {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    } else if b == b'\n' {
                        // JSON strings cannot hold raw newlines: the value was cut off.
                        out.push(Err(BadInput {
                            line: start_line,
                            reason: "unterminated JSON value (string runs into a new line)".into(),
                        }));
                        current = None;
                        in_string = false;
                        line += 1;
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                out.push(Ok((start_line, &input[start..=i])));
                                current = None;
                            }
                        }
                        b'\n' => {
                            line += 1;
                            if bytes.get(i + 1) == Some(&b'{') {
                                out.push(Err(BadInput {
                                    line: start_line,
                                    reason: "unterminated JSON value".into(),
                                }));
                                current = None;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        i += 1;
    }
    if let Some((_, start_line)) = current {
        out.push(Err(BadInput {
            line: start_line,
            reason: "unterminated JSON value at end of input".into(),
        }));
    }
    out
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
                serde_saphyr::from_str::<WireObject>(doc)
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
            .into_iter()
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
