//! Durations written in attributes (`"500ms"`, `"30s"`, `"1m30s"`), checked at compile time and
//! emitted as milliseconds, so a typo never reaches run time.

use syn::LitStr;

/// The accepted format, quoted in every error.
pub(crate) const FORMAT: &str =
    "a duration is an integer followed by a unit (`ms`, `s`, `m` or `h`), optionally concatenated, such as \"500ms\", \"30s\" or \"1m30s\"";

/// Parses `lit` as a duration in milliseconds; `option` names the option in the error.
pub(crate) fn parse_millis(lit: &LitStr, option: &str) -> syn::Result<u64> {
    let text = lit.value();
    parse_text(&text).ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            format!("malformed duration {text:?} in `{option}`; {FORMAT}"),
        )
    })
}

fn parse_text(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let amount: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`, so "500ms" is not read as 500 minutes followed by garbage.
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[unit_len..];
        total = total.checked_add(amount.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_text;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_text("500ms"), Some(500));
        assert_eq!(parse_text("30s"), Some(30_000));
        assert_eq!(parse_text("2m"), Some(120_000));
        assert_eq!(parse_text("1h"), Some(3_600_000));
        assert_eq!(parse_text("1m30s"), Some(90_000));
        assert_eq!(parse_text("1s500ms"), Some(1_500));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "30",
            "s",
            "30 s",
            "1.5s",
            "30sec",
            "-1s",
            "1d",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_text(bad), None, "{bad}");
        }
    }
}
