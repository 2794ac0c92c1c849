//! Durations written in attributes (`"500ms"`, `"30s"`, `"2min"`, `"1h 30m"`), checked at
//! compile time and emitted as milliseconds, so a typo never reaches run time.
//!
//! The grammar is humantime's, the same that `flow.toml` and `FLOW_*` variables use for
//! durations, so a value can move between an attribute and the settings unchanged.

use syn::LitStr;

/// The accepted format, quoted in every error.
pub(crate) const FORMAT: &str =
    "a duration is a number followed by a unit (`ms`, `s`, `m`/`min`, `h`, `d`), optionally several, such as \"500ms\", \"30s\", \"2min\" or \"1m 30s\" (the format of durations in `flow.toml`)";

/// Parses `lit` as a duration in milliseconds; `option` names the option in the error.
pub(crate) fn parse_millis(lit: &LitStr, option: &str) -> syn::Result<u64> {
    let text = lit.value();
    parse_text(&text).map_err(|reason| {
        syn::Error::new(
            lit.span(),
            format!("malformed duration {text:?} in `{option}`: {reason}; {FORMAT}"),
        )
    })
}

fn parse_text(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err("flow counts delays in whole milliseconds".to_owned());
    }
    u64::try_from(duration.as_millis()).map_err(|_| "the value is too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_text;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_text("500ms"), Ok(500));
        assert_eq!(parse_text("30s"), Ok(30_000));
        assert_eq!(parse_text("2m"), Ok(120_000));
        assert_eq!(parse_text("2min"), Ok(120_000));
        assert_eq!(parse_text("1h"), Ok(3_600_000));
        assert_eq!(parse_text("1m30s"), Ok(90_000));
        assert_eq!(parse_text("1m 30s"), Ok(90_000));
        assert_eq!(parse_text("1s500ms"), Ok(1_500));
        assert_eq!(parse_text("1d"), Ok(86_400_000));
        assert_eq!(parse_text("1.5s"), Ok(1_500));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "30",
            "s",
            "30sex",
            "-1s",
            "1500us",
            "99999999999999999999h",
        ] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
    }
}
