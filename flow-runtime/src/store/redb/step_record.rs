//! A step record's value in the `steps` table.
//!
//! Since schema 4 a value is binary: every checkpoint is one of these, and at high concurrency
//! each lands in another run's leaf page, so the bytes per checkpoint decide how many pages a
//! group commit rewrites, and the encoding is paid once per step. Nobody reads these bytes but
//! flow; what a person reads (`inspect`, the web console) is decoded from them. A step's own
//! data (its output, an `at_most_once` call's arguments, a failure) stays in its serde form,
//! JSON, inside the record.
//!
//! The layout, all integers unsigned LEB128 (7 bits a byte, low bits first):
//!
//! | part | bytes |
//! |---|---|
//! | tag | `0x01` (a schema-3 JSON record starts with `{`) |
//! | status | 1: started 0, backoff 1, succeeded 2, failed 3 |
//! | fields present | 1: next attempt 0x01, output 0x02, error 0x04, error class 0x08, finish 0x10, arguments 0x20, failure 0x40 |
//! | attempt | integer |
//! | started, ms since the epoch | integer |
//! | next attempt, ms since the epoch | integer, if present |
//! | finished | integer, if present: ms after the start, plus one; 0 for a finish before the start (a clock stepped back), followed by the finish itself |
//! | error class | 1, if present: transient 0, permanent 1 |
//! | error, output, arguments, failure | each if present, in this order: length, then UTF-8 (the error) or JSON |
//!
//! Records written by schema 3 (compact JSON, `{"s":"succeeded","a":1,…}`) are still read.

use super::super::{ErrorClass, RunId, StepId, StepRecord, StepStatus};

/// The first byte of a binary record.
const TAG: u8 = 0x01;

const NEXT_ATTEMPT: u8 = 0x01;
const OUTPUT: u8 = 0x02;
const ERROR: u8 = 0x04;
const ERROR_CLASS: u8 = 0x08;
const FINISHED: u8 = 0x10;
const ARGS: u8 = 0x20;
const FAILURE: u8 = 0x40;
const KNOWN: u8 = NEXT_ATTEMPT | OUTPUT | ERROR | ERROR_CLASS | FINISHED | ARGS | FAILURE;

/// `step`'s value. A `null` output is left out: it reads back as none, as `()` outputs always
/// have. Fails only where serde_json fails on a value (a map with non-string keys, say).
#[cfg(test)]
fn encode(step: &StepRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    encode_into(step, &mut out)?;
    Ok(out)
}

/// [`encode`], appended to `out`.
pub(super) fn encode_into(step: &StepRecord, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let output = step.output.as_ref().filter(|o| !o.is_null());
    let mut present = 0;
    for (is, bit) in [
        (step.next_attempt_at_ms.is_some(), NEXT_ATTEMPT),
        (output.is_some(), OUTPUT),
        (step.error.is_some(), ERROR),
        (step.error_class.is_some(), ERROR_CLASS),
        (step.finished_at_ms.is_some(), FINISHED),
        (step.args.is_some(), ARGS),
        (step.failure.is_some(), FAILURE),
    ] {
        if is {
            present |= bit;
        }
    }
    out.extend_from_slice(&[TAG, status_code(step.status), present]);
    put_int(out, u64::from(step.attempt));
    put_int(out, step.started_at_ms);
    if let Some(at) = step.next_attempt_at_ms {
        put_int(out, at);
    }
    if let Some(at) = step.finished_at_ms {
        match at.checked_sub(step.started_at_ms) {
            Some(took) if took < u64::MAX => put_int(out, took + 1),
            _ => {
                put_int(out, 0);
                put_int(out, at);
            }
        }
    }
    if let Some(class) = step.error_class {
        out.push(match class {
            ErrorClass::Transient => 0,
            ErrorClass::Permanent => 1,
        });
    }
    if let Some(error) = &step.error {
        put_bytes(out, error.as_bytes());
    }
    for json in [output, step.args.as_ref(), step.failure.as_ref()]
        .into_iter()
        .flatten()
    {
        put_json(out, json)?;
    }
    Ok(())
}

/// The step `id` of run `run_id` from its stored value, binary or schema-3 JSON (the identity
/// is the table key, not part of the value); `Err` says what is wrong with the value.
pub(super) fn decode(run_id: RunId, id: StepId, bytes: &[u8]) -> Result<StepRecord, String> {
    match bytes.first() {
        Some(&TAG) => Reader { bytes, at: 1 }.record(run_id, id),
        Some(b'{') => decode_json(run_id, id, bytes),
        Some(other) => Err(format!("it starts with the unknown byte {other:#04x}")),
        None => Err("it is empty".into()),
    }
}

fn status_code(status: StepStatus) -> u8 {
    match status {
        StepStatus::Started => 0,
        StepStatus::Backoff => 1,
        StepStatus::Succeeded => 2,
        StepStatus::Failed => 3,
    }
}

fn put_int(out: &mut Vec<u8>, n: u64) {
    let (bytes, len) = int_bytes(n);
    out.extend_from_slice(&bytes[..len]);
}

/// `n` in LEB128: the bytes and how many of them count.
fn int_bytes(mut n: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut len = 0;
    while n >= 0x80 {
        bytes[len] = (n as u8) | 0x80;
        n >>= 7;
        len += 1;
    }
    bytes[len] = n as u8;
    (bytes, len + 1)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Length-prefixed JSON, written in place: the length goes in front once it is known.
fn put_json(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), serde_json::Error> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value)?;
    let (len, n) = int_bytes((out.len() - start) as u64);
    out.splice(start..start, len[..n].iter().copied());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn record(mut self, run_id: RunId, id: StepId) -> Result<StepRecord, String> {
        let status = match self.byte("the status")? {
            0 => StepStatus::Started,
            1 => StepStatus::Backoff,
            2 => StepStatus::Succeeded,
            3 => StepStatus::Failed,
            other => return Err(format!("its status code {other} is unknown")),
        };
        let present = self.byte("the fields present")?;
        if present & !KNOWN != 0 {
            return Err(format!(
                "it has fields this flow does not know ({present:#04x}): written by a newer flow?"
            ));
        }
        let has = |bit: u8| present & bit != 0;
        let attempt = u32::try_from(self.int("the attempt")?)
            .map_err(|_| "its attempt number is out of range".to_owned())?;
        let started_at_ms = self.int("the start time")?;
        let next_attempt_at_ms = if has(NEXT_ATTEMPT) {
            Some(self.int("the next attempt's time")?)
        } else {
            None
        };
        let finished_at_ms = if has(FINISHED) {
            Some(match self.int("the finish time")? {
                0 => self.int("the finish time")?,
                took => started_at_ms
                    .checked_add(took - 1)
                    .ok_or("its finish time is out of range")?,
            })
        } else {
            None
        };
        let error_class = if has(ERROR_CLASS) {
            Some(match self.byte("the error class")? {
                0 => ErrorClass::Transient,
                1 => ErrorClass::Permanent,
                other => return Err(format!("its error class code {other} is unknown")),
            })
        } else {
            None
        };
        let error = if has(ERROR) {
            let bytes = self.sized("the error")?;
            Some(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| "its error is not UTF-8".to_owned())?,
            )
        } else {
            None
        };
        let output = self.json_if(has(OUTPUT), "the output")?;
        let args = self.json_if(has(ARGS), "the arguments")?;
        let failure = self.json_if(has(FAILURE), "the failure")?;
        if self.at != self.bytes.len() {
            return Err(format!(
                "{} bytes follow its last field",
                self.bytes.len() - self.at
            ));
        }
        Ok(StepRecord {
            run_id,
            id,
            status,
            attempt,
            next_attempt_at_ms,
            output,
            error,
            error_class,
            started_at_ms,
            finished_at_ms,
            args,
            failure,
        })
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("it ends before {what}"))?;
        self.at += 1;
        Ok(b)
    }

    fn int(&mut self, what: &str) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("{what} is out of range"))
    }

    fn sized(&mut self, what: &str) -> Result<&[u8], String> {
        let len = self.int(what)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("{what} runs past its end"))?;
        let bytes = &self.bytes[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn json_if(&mut self, present: bool, what: &str) -> Result<Option<serde_json::Value>, String> {
        if !present {
            return Ok(None);
        }
        let bytes = self.sized(what)?;
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|err| format!("{what} is not JSON: {err}"))
    }
}

/// A schema-3 record: compact JSON with one- or two-letter field names (`s` status, `a`
/// attempt, `n` next attempt, `o` output, `e` error, `c` error class, `t0`/`t1` start and
/// finish, `g` arguments, `f` failure).
fn decode_json(run_id: RunId, id: StepId, bytes: &[u8]) -> Result<StepRecord, String> {
    #[derive(serde::Deserialize)]
    struct Json {
        s: StepStatus,
        a: u32,
        #[serde(default)]
        n: Option<u64>,
        #[serde(default)]
        o: Option<serde_json::Value>,
        #[serde(default)]
        e: Option<String>,
        #[serde(default)]
        c: Option<ErrorClass>,
        t0: u64,
        #[serde(default)]
        t1: Option<u64>,
        #[serde(default)]
        g: Option<serde_json::Value>,
        #[serde(default)]
        f: Option<serde_json::Value>,
    }
    let j: Json = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
    Ok(StepRecord {
        run_id,
        id,
        status: j.s,
        attempt: j.a,
        next_attempt_at_ms: j.n,
        output: j.o,
        error: j.e,
        error_class: j.c,
        started_at_ms: j.t0,
        finished_at_ms: j.t1,
        args: j.g,
        failure: j.f,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    /// A succeeded step without output: the store tests' record, at real timestamps.
    fn record() -> StepRecord {
        let mut step = super::super::tests::step("r", "charge", "k", 0);
        step.output = None;
        step.started_at_ms = 1_764_400_000_000;
        step.finished_at_ms = Some(1_764_400_000_003);
        step
    }

    fn decoded(bytes: &[u8]) -> Result<StepRecord, String> {
        let step = record();
        decode(step.run_id, step.id, bytes)
    }

    fn round_trip(step: &StepRecord) -> StepRecord {
        decode(step.run_id.clone(), step.id.clone(), &encode(step).unwrap()).unwrap()
    }

    #[test]
    fn a_succeeded_no_op_step_takes_eleven_bytes_in_a_fixed_layout() {
        // Part of the store format (schema 4): these bytes must always decode the same.
        let bytes = encode(&record()).unwrap();
        assert_eq!(
            bytes,
            [0x01, 2, FINISHED, 1, 0x80, 0xd8, 0xbd, 0xf3, 0xac, 0x33, 4]
        );
        assert_eq!(decoded(&bytes).unwrap(), record());
    }

    #[test]
    fn every_field_reads_back_as_written() {
        let mut step = record();
        step.status = StepStatus::Backoff;
        step.attempt = u32::MAX;
        step.next_attempt_at_ms = Some(u64::MAX);
        step.output = Some(json!({"rows": [1, 2.5, "é\u{1f}"], "none": null}));
        step.error = Some("timeout\nafter 30 s".into());
        step.error_class = Some(ErrorClass::Transient);
        step.args = Some(json!(["42", {"b": true}]));
        step.failure = Some(json!({"Invalid": "field"}));
        assert_eq!(round_trip(&step), step);
        for status in [StepStatus::Started, StepStatus::Failed] {
            step.status = status;
            step.error_class = Some(ErrorClass::Permanent);
            assert_eq!(round_trip(&step), step);
        }
    }

    #[test]
    fn a_finish_before_the_start_or_at_the_far_end_of_time_reads_back() {
        for (start, finish) in [(500, 499), (500, 0), (0, u64::MAX), (u64::MAX, u64::MAX)] {
            let mut step = record();
            step.started_at_ms = start;
            step.finished_at_ms = Some(finish);
            assert_eq!(round_trip(&step), step);
        }
        let mut step = record();
        step.finished_at_ms = None;
        assert_eq!(round_trip(&step), step);
    }

    #[test]
    fn a_null_output_reads_back_as_none() {
        let mut step = record();
        step.output = Some(serde_json::Value::Null);
        assert_eq!(round_trip(&step), record());
    }

    #[test]
    fn a_schema_3_json_record_still_reads() {
        let read =
            decoded(br#"{"s":"failed","a":3,"e":"bad","c":"permanent","t0":5,"t1":9,"f":{"x":1}}"#)
                .unwrap();
        let mut expected = record();
        expected.status = StepStatus::Failed;
        expected.attempt = 3;
        expected.error = Some("bad".into());
        expected.error_class = Some(ErrorClass::Permanent);
        (expected.started_at_ms, expected.finished_at_ms) = (5, Some(9));
        expected.failure = Some(json!({"x": 1}));
        assert_eq!(read, expected);
    }

    #[test]
    fn damaged_records_are_errors_that_say_what_is_wrong() {
        let good = encode(&record()).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![0x02], "unknown byte 0x02"),
            (
                good[..good.len() - 1].to_vec(),
                "ends before the finish time",
            ),
            ([&good[..], &[0]].concat(), "1 bytes follow"),
            (vec![TAG, 9, 0, 1, 1], "status code 9"),
            (vec![TAG, 2, 0x80, 1, 1], "newer flow"),
            (
                vec![TAG, 2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 1],
                "out of range",
            ),
            (
                [&[TAG, 2, 0, 1][..], &[0xff; 10], &[1]].concat(),
                "start time is out of range",
            ),
            (vec![TAG, 2, ERROR, 1, 1, 200, b'x'], "the error runs past"),
            (vec![TAG, 2, ERROR, 1, 1, 1, 0xff], "not UTF-8"),
            (
                vec![TAG, 2, OUTPUT, 1, 1, 1, b'{'],
                "the output is not JSON",
            ),
            (vec![TAG, 2, ERROR_CLASS, 1, 1, 7], "error class code 7"),
        ];
        for (bytes, says) in cases {
            let err = decoded(&bytes).expect_err(says);
            assert!(err.contains(says), "{bytes:?}: {err}");
        }
    }
}
