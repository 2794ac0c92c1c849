//! What the console writes to a terminal or a pipe: lines that survive a closed pipe, text with
//! its control characters made visible, and commands quoted for a shell.
//!
//! Every `println!` and `eprintln!` of the console lands here (`cli/mod.rs` shadows the std
//! macros), so a `| head` that closes stdout ends the output quietly instead of panicking, and
//! no command can forget to. This module does not decide what to print.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Stdout was closed by its reader (`| head`): later output is dropped, quietly.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Writing stdout failed for another reason (a full disk): reported once, and the exit code
/// says so.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout. A closed pipe stops the output without an error, as Unix tools
/// do; any other failure is reported on stderr once.
pub(crate) fn line(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) || STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        } else {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            error_line(format_args!("error: could not write the output: {e}"));
        }
    }
}

/// Writes bytes to stdout as they are (a completion script), like [`line`] does.
pub(crate) fn raw(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) || STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        } else {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            error_line(format_args!("error: could not write the output: {e}"));
        }
    }
}

/// Writes one line to stderr; if stderr itself is gone there is nobody left to tell.
pub(crate) fn error_line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Whether some output could not be written for a reason other than a closed pipe.
pub(crate) fn failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// `text` with every control character shown as an escape (`\n`, `\t`, `\u{1b}`), and the
/// invisible characters that reorder or hide text (bidi overrides, zero-width) too: a run id,
/// a step key or an error from an external system cannot clear the screen, forge table rows
/// or hide what it says.
pub(crate) fn escape(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Like [`escape`] but keeps line breaks: for multi-line text that flow itself composed around
/// user values (a usage error).
pub(crate) fn escape_keeping_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `word` as one shell word: as is when it holds only characters no shell treats specially,
/// otherwise in single quotes (a quote inside becomes `'\''`).
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-:@+/=,%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("plain id"), "plain id");
        assert_eq!(escape("a\x1b[2Jb"), r"a\u{1b}[2Jb");
        assert_eq!(escape("x\nfake row"), r"x\nfake row");
        assert_eq!(escape("tab\there"), r"tab\there");
        assert_eq!(escape("rtl\u{202e}txt"), r"rtl\u{202e}txt");
        assert_eq!(escape_keeping_lines("a\nb\x07"), "a\nb\\u{7}");
    }

    #[test]
    fn words_are_quoted_only_when_a_shell_would_read_them() {
        assert_eq!(
            shell_quote("nightly@2026-11-28T02:00:00Z"),
            "nightly@2026-11-28T02:00:00Z"
        );
        assert_eq!(shell_quote("x; touch PWNED #"), "'x; touch PWNED #'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
    }
}
