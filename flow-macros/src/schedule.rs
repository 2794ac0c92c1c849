//! Schedules written in `#[workflow(schedule = "...", timezone = "...", catch_up = "...",
//! overlap = "...")]`, checked at compile time so that a typo in a cron expression or a zone
//! name never reaches a worker.
//!
//! The cron grammar is croner's with seconds optional and no year field ([`cron_parser`]): the
//! scheduler in flow-runtime must parse with the same settings, so that an expression accepted
//! here means the same there. Zones come from jiff's bundled tz database, which every binary
//! that uses flow carries, so a zone accepted here exists wherever the binary runs.

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZoneDatabase;

/// The accepted cron format, quoted in every cron error.
const FORMAT: &str = "a schedule is 5 fields, `minute hour day-of-month month day-of-week`, or 6 with `second` first, such as \"0 2 * * *\" (every day at 02:00), \"*/15 * * * *\" (every 15 minutes) or \"30 0 9 * * MON-FRI\" (weekdays at 09:00:30)";

/// Each field's name and what it takes besides `*`, lists, ranges and steps, in the order of
/// a 6-field expression.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    (
        "day-of-month",
        "1-31, `L` (the last day) or `15W` (the weekday nearest the 15th)",
    ),
    ("month", "1-12 or JAN-DEC"),
    (
        "day-of-week",
        "0-7 (0 and 7 are Sunday) or SUN-SAT, `5L` (the last Friday) or `1#2` (the second Monday)",
    ),
];

/// The `@` shortcuts croner expands.
const SHORTCUTS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// The parser of schedules: 5 fields, or 6 with seconds first; no year field; a day-of-month
/// and a day-of-week that are both restricted match when either matches (Vixie cron).
pub(crate) fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Checks a cron expression: it parses, and it fires at least once.
pub(crate) fn check_cron(text: &str) -> Result<(), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "the cron expression in `schedule` is empty; {FORMAT}"
        ));
    }
    if trimmed.starts_with('@') {
        if !SHORTCUTS.iter().any(|s| s.eq_ignore_ascii_case(trimmed)) {
            let lower = trimmed.to_ascii_lowercase();
            let close = SHORTCUTS
                .iter()
                .find(|s| edit_distance(&lower, s) <= 2)
                .map(|s| format!(" did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown cron shortcut `{trimmed}`;{close} the shortcuts are {}; {FORMAT}",
                SHORTCUTS.map(|s| format!("`{s}`")).join(", ")
            ));
        }
    } else {
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        if !(5..=6).contains(&fields.len()) {
            return Err(format!(
                "the cron expression {text:?} has {} field{}; {FORMAT}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ));
        }
        if let Err(error) = cron_parser().parse(trimmed) {
            return Err(explain(text, &fields, &error));
        }
    }
    let cron = cron_parser()
        .parse(trimmed)
        .map_err(|e| format!("malformed cron expression {text:?}: {e}; {FORMAT}"))?;
    if never_fires(&cron) {
        return Err(format!(
            "the cron expression {text:?} never fires: no date has that day of the month in those months ({}); for the last day of a month, write `L` as the day of the month, such as \"0 0 L 2 *\"",
            describe(&cron)
        ));
    }
    Ok(())
}

/// Names the field that croner refused: each field is parsed alone, the others `*`.
fn explain(text: &str, fields: &[&str], whole: &CronError) -> String {
    let offset = FIELDS.len() - fields.len();
    for (i, field) in fields.iter().enumerate() {
        let mut alone = vec!["*"; fields.len()];
        alone[i] = field;
        if let Err(error) = cron_parser().parse(&alone.join(" ")) {
            let (name, takes) = FIELDS[i + offset];
            return format!(
                "malformed cron expression {text:?}: the {name} field `{field}` {}; the {name} field takes {takes}, `*`, lists (`1,15`), ranges (`1-5`) and steps (`*/10`); {FORMAT}",
                reason(i + offset, field, &error)
            );
        }
    }
    format!(
        "malformed cron expression {text:?}: {}; {FORMAT}",
        clause(&whole.to_string())
    )
}

/// Month and day names, which croner replaces by numbers before it parses.
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Why croner refused the field at `index` (of 6): croner's explanation as a clause, or, for a
/// word that is no month or day name, that word.
fn reason(index: usize, field: &str, error: &CronError) -> String {
    match error {
        CronError::IllegalCharacters(message) => {
            let names: &[&str] = match index {
                4 => &MONTHS,
                5 => &DAYS,
                _ => &[],
            };
            let upper = field.to_ascii_uppercase();
            let unknown = upper
                .split(|c: char| !c.is_ascii_alphabetic())
                .find(|word| word.len() > 1 && !names.contains(word));
            if let (Some(word), false) = (unknown, names.is_empty()) {
                let kind = if index == 4 { "month" } else { "day" };
                let names = names.join(", ");
                return if word == upper {
                    format!("is no {kind} name ({names})")
                } else {
                    format!("has `{word}`, which is no {kind} name ({names})")
                };
            }
            // "CronPattern contains illegal character 'F' in part '1-FRY'": the part is shown
            // after croner's replacement of names, so only the character is quoted.
            let character = message
                .split_once("character '")
                .and_then(|(_, rest)| rest.chars().next())
                .map(|c| {
                    // As the user wrote it: croner reports it upper-cased.
                    field
                        .chars()
                        .find(|f| f.eq_ignore_ascii_case(&c))
                        .unwrap_or(c)
                });
            match character {
                Some(c) => format!("contains `{c}`, which this field does not accept"),
                None => "contains a character this field does not accept".to_owned(),
            }
        }
        CronError::ComponentError(message) | CronError::InvalidPattern(message) => {
            format!("is invalid ({})", clause(message))
        }
        other => format!("is invalid ({})", clause(&other.to_string())),
    }
}

/// "Number out of bounds." as "number out of bounds".
fn clause(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether no time ever matches (day 31 of February): croner searches up to the year 5000.
fn never_fires(cron: &Cron) -> bool {
    let Ok(start) = jiff::civil::date(2025, 1, 1).to_zoned(jiff::tz::TimeZone::UTC) else {
        return false;
    };
    matches!(
        cron.find_next_occurrence(&start, true),
        Err(CronError::TimeSearchLimitExceeded)
    )
}

/// croner's description ("At 00:00, on day 31, in February."), as a clause.
fn describe(cron: &Cron) -> String {
    clause(&cron.describe())
}

/// Looks a zone up in the bundled tz database; returns its canonical name ("europe/berlin"
/// becomes "Europe/Berlin"), or the error with a suggestion.
pub(crate) fn check_timezone(name: &str) -> Result<String, String> {
    let db = TimeZoneDatabase::bundled();
    // `Etc/Unknown` is found, but as a zone without a name, which no schedule can run in.
    if let Some(found) = db
        .get(name)
        .ok()
        .and_then(|tz| tz.iana_name().map(str::to_owned))
    {
        return Ok(found);
    }
    let examples =
        "a time zone is an IANA name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"";
    let names: Vec<String> = db.available().map(|n| n.to_string()).collect();
    Err(match suggest(name, &names) {
        Some(close) => format!("unknown time zone {name:?} in `timezone`; did you mean {close:?}?"),
        None => format!("unknown time zone {name:?} in `timezone`; {examples}"),
    })
}

/// A zone name close to `given`: the same with `_` for spaces, a city without its region
/// ("Berlin"), or a name within a few typos.
fn suggest<'a>(given: &str, names: &'a [String]) -> Option<&'a str> {
    let normal = |s: &str| s.trim().to_ascii_lowercase().replace(' ', "_");
    let raw = given.trim();
    let given = normal(given);
    if given.is_empty() {
        return None;
    }
    // A quarter of the length: "Europe/Berln" is one typo from "Europe/Berlin", but "PST" is
    // no typo of "EST".
    let allowed = given.chars().count() / 4;
    let mut best: Option<(usize, &str)> = None;
    for name in names {
        // The name itself was looked up already (`Etc/Unknown`).
        if name.eq_ignore_ascii_case(raw) {
            continue;
        }
        let full = normal(name);
        let city = full.rsplit('/').next().unwrap_or(&full);
        let mut distance = edit_distance(&given, &full);
        if !given.contains('/') && full.contains('/') {
            distance = distance.min(edit_distance(&given, city));
        }
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A policy named in `catch_up` or `overlap`: the variant's identifier, or the error listing
/// the allowed names. `policies` pairs each name with its variant, the default first.
pub(crate) fn policy(
    option: &str,
    given: &str,
    policies: &[(&str, &'static str)],
) -> Result<&'static str, String> {
    if let Some((_, variant)) = policies.iter().find(|(name, _)| *name == given) {
        return Ok(variant);
    }
    let names: Vec<String> = policies
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            if i == 0 {
                format!("`{name}` (the default)")
            } else {
                format!("`{name}`")
            }
        })
        .collect();
    let (last, rest) = names
        .split_last()
        .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
    Err(format!(
        "unknown `{option}` policy {given:?}; expected one of {} or {last}",
        rest.join(", ")
    ))
}

/// `catch_up` names and the `CatchUp` variants (flow-runtime's `CatchUp::ALL`), the default
/// first.
pub(crate) const CATCH_UP: [(&str, &str); 3] =
    [("latest", "Latest"), ("skip", "Skip"), ("all", "All")];

/// `overlap` names and the `Overlap` variants (flow-runtime's `Overlap::ALL`), the default
/// first.
pub(crate) const OVERLAP: [(&str, &str); 4] = [
    ("skip", "Skip"),
    ("buffer_one", "BufferOne"),
    ("buffer_all", "BufferAll"),
    ("allow", "Allow"),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion
    use super::*;

    #[test]
    fn accepts_five_and_six_fields_and_shortcuts() {
        for good in [
            "0 2 * * *",
            "*/15 * * * *",
            "30 0 9 * * MON-FRI",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "0 0 29 2 *",
            "0 0 * 2 1#5",
            "@daily",
            "@Weekly",
            " 0 2 * * * ",
        ] {
            assert_eq!(check_cron(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let error = check_cron("0 25 * * *").unwrap_err();
        assert!(
            error.contains(
                "the hour field `25` is invalid (number out of bounds); the hour field takes 0-23"
            ),
            "{error}"
        );
        let error = check_cron("0 2 * * mon-fry").unwrap_err();
        assert!(
            error.contains(
                "the day-of-week field `mon-fry` has `FRY`, which is no day name (SUN, MON"
            ),
            "{error}"
        );
        let error = check_cron("0 2 * JANUARY *").unwrap_err();
        assert!(
            error.contains("the month field `JANUARY` is no month name (JAN, FEB"),
            "{error}"
        );
        let error = check_cron("0 2 * * 1%2").unwrap_err();
        assert!(
            error.contains("the day-of-week field `1%2` contains `%`"),
            "{error}"
        );
        let error = check_cron("61 0 2 * * *").unwrap_err();
        assert!(error.contains("the second field `61`"), "{error}");
        let error = check_cron("*/0 * * * *").unwrap_err();
        assert!(
            error.contains("the minute field `*/0` is invalid (step cannot be zero)"),
            "{error}"
        );
    }

    #[test]
    fn refuses_counts_shortcuts_and_dates_that_never_come() {
        assert!(check_cron("0 2 * *").unwrap_err().contains("has 4 fields"));
        assert!(check_cron("0 0 0 1 1 * 2030")
            .unwrap_err()
            .contains("has 7 fields"));
        assert!(check_cron("").unwrap_err().contains("is empty"));
        let error = check_cron("@dayly").unwrap_err();
        assert!(
            error.contains("unknown cron shortcut `@dayly`; did you mean `@daily`?"),
            "{error}"
        );
        let error = check_cron("@reboot").unwrap_err();
        assert!(
            error.contains("unknown cron shortcut `@reboot`; the shortcuts are"),
            "{error}"
        );
        let error = check_cron("0 0 31 2 *").unwrap_err();
        assert!(error.contains("never fires"), "{error}");
        assert!(error.contains("on day 31, in February"), "{error}");
    }

    #[test]
    fn finds_zones_and_suggests_close_names() {
        assert_eq!(
            check_timezone("Europe/Berlin").as_deref(),
            Ok("Europe/Berlin")
        );
        assert_eq!(
            check_timezone("europe/berlin").as_deref(),
            Ok("Europe/Berlin")
        );
        assert_eq!(check_timezone("UTC").as_deref(), Ok("UTC"));
        assert_eq!(
            check_timezone("Europe/Berln"),
            Err(
                "unknown time zone \"Europe/Berln\" in `timezone`; did you mean \"Europe/Berlin\"?"
                    .to_owned()
            )
        );
        let error = check_timezone("America/New York").unwrap_err();
        assert!(
            error.contains("did you mean \"America/New_York\""),
            "{error}"
        );
        let error = check_timezone("Tokio").unwrap_err();
        assert!(error.contains("did you mean \"Asia/Tokyo\""), "{error}");
        for far in ["PST", "Mars/Olympus", "", "Etc/Unknown"] {
            let error = check_timezone(far).unwrap_err();
            assert!(!error.contains("did you mean"), "{error}");
            assert!(error.contains("such as \"Europe/Berlin\""), "{error}");
        }
    }

    #[test]
    fn policies_list_the_allowed_names() {
        assert_eq!(policy("catch_up", "all", &CATCH_UP), Ok("All"));
        assert_eq!(
            policy("catch_up", "lastest", &CATCH_UP),
            Err("unknown `catch_up` policy \"lastest\"; expected one of `latest` (the default), `skip` or `all`".to_owned())
        );
        assert_eq!(policy("overlap", "buffer_one", &OVERLAP), Ok("BufferOne"));
    }
}
