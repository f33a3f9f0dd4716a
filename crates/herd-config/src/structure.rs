//! Every structural problem of a file (an unknown key, a value of the wrong type), not only
//! the first: serde stops at the first one, so each is taken out of a working copy and the
//! copy is read again. A problem's lines are blanked to spaces of the same byte length, so
//! every later line and column still points into the file as written.

use crate::raw;

/// How many problems one file may report before we stop looking.
const MAX_PROBLEMS: usize = 50;

/// The reasons of every structural problem, starting with `first` (the error of the whole
/// file). A syntax error is reported alone: nothing after it can be trusted.
pub(crate) fn every_problem(text: &str, first: &toml::de::Error) -> Vec<String> {
    let mut reasons = vec![reason(first, text)];
    if text.parse::<toml::Table>().is_err() {
        return reasons;
    }
    let mut work = text.to_string();
    let mut span = first.span();
    let mut rounds = 0;
    while let Some(s) = span.take() {
        rounds += 1;
        if reasons.len() >= MAX_PROBLEMS || rounds > 4 * MAX_PROBLEMS {
            break;
        }
        blank_lines(&mut work, s.clone());
        // Blanking part of a multi-line value leaves broken TOML: stop rather than report
        // what we broke.
        if work.parse::<toml::Table>().is_err() {
            break;
        }
        let Err(e) = toml::from_str::<raw::FileConfig>(&work) else {
            break;
        };
        if e.span() == Some(s) {
            break;
        }
        // A key we blanked may be a required one: that "missing field" is ours, not the
        // user's (they get it once the key's own problem is fixed). Its table goes too, so
        // the tables after it are still read.
        if !e.message().starts_with("missing field") {
            reasons.push(reason(&e, &work));
        }
        span = e.span();
    }
    reasons
}

/// Replaces every line that `span` touches with spaces (keeping the newlines and the byte
/// length).
fn blank_lines(text: &mut String, span: std::ops::Range<usize>) {
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |p| p + 1);
    let end = text[span.end.min(text.len())..]
        .find('\n')
        .map_or(text.len(), |p| span.end + p);
    let blanked: String = text[start..end]
        .chars()
        .map(|c| {
            if c == '\n' {
                "\n".to_string()
            } else {
                " ".repeat(c.len_utf8())
            }
        })
        .collect();
    text.replace_range(start..end, &blanked);
}

/// toml's message already names the key; add the line and column so it reads like a
/// compiler's.
pub(crate) fn reason(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rfind('\n')
                .map_or(before.len(), |p| before.len() - p - 1)
                + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}
