//! Parses the arguments of `#[step(...)]` into [`StepArgs`], keeping each option's span.
//!
//! Only the syntax and the values of single options are checked here (unknown and duplicated
//! options, retry policy names, durations); rules that combine options live in `validate`.

use crate::duration;
use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Lit, LitStr, Path, Token};

const OPTIONS: &str = "`idempotent`, `idempotency_key = <expr>`, `at_most_once`, `read_only`, `retry`, `timeout`, `name`, `dry_run` or `skip(<parameters>)`";
const RETRY_KEYS: &str = "`attempts`, `initial`, `max`, `multiplier` or `jitter`";

/// An option's value together with where it was written.
pub(crate) struct Setting<T> {
    /// The option's name as written (for "duplicate" and "conflicts with" errors).
    pub(crate) key: Ident,
    pub(crate) value: T,
}

/// The repeat-safety options.
pub(crate) enum Repeat {
    Idempotent,
    Key(Expr),
    AtMostOnce,
}

impl Repeat {
    pub(crate) fn option(&self) -> &'static str {
        match self {
            Repeat::Idempotent => "idempotent",
            Repeat::Key(_) => "idempotency_key",
            Repeat::AtMostOnce => "at_most_once",
        }
    }
}

/// `retry = "..."` or `retry(...)`.
pub(crate) enum Retry {
    Named(String),
    Inline(InlineRetry),
}

/// An inline retry policy with the defaults filled in.
pub(crate) struct InlineRetry {
    pub(crate) attempts: u32,
    pub(crate) initial_ms: u64,
    pub(crate) max_ms: u64,
    pub(crate) multiplier: f64,
    pub(crate) jitter: bool,
}

/// `dry_run = "default"` or `dry_run = path::to::fn`.
pub(crate) enum DryRun {
    Default,
    Function(Path),
}

/// Everything written in `#[step(...)]`.
#[derive(Default)]
pub(crate) struct StepArgs {
    /// The repeat-safety options in the order written (more than one is an error).
    pub(crate) repeat: Vec<Setting<Repeat>>,
    pub(crate) read_only: Option<Setting<()>>,
    pub(crate) retry: Option<Setting<Retry>>,
    pub(crate) timeout_ms: Option<Setting<u64>>,
    pub(crate) name: Option<Setting<LitStr>>,
    pub(crate) dry_run: Option<Setting<DryRun>>,
    /// `skip(a, b)`: parameters left out of the key, the stored arguments and the plan.
    pub(crate) skip: Option<Setting<Vec<Ident>>>,
}

/// Parses the attribute arguments; errors go to `errors`, and what could be read is returned.
pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> StepArgs {
    let mut parsed = StepArgs::default();
    let parser = |input: ParseStream| parse_options(input, &mut parsed, errors);
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    parsed
}

fn parse_options(input: ParseStream, args: &mut StepArgs, errors: &mut Errors) -> syn::Result<()> {
    while !input.is_empty() {
        let key = input.call(Ident::parse_any)?;
        match key.to_string().as_str() {
            "idempotent" => {
                flag(input, &key, errors);
                push_repeat(args, key, Repeat::Idempotent, errors);
            }
            "at_most_once" => {
                flag(input, &key, errors);
                push_repeat(args, key, Repeat::AtMostOnce, errors);
            }
            "idempotency_key" => {
                input.parse::<Token![=]>()?;
                let expr: Expr = input.parse()?;
                push_repeat(args, key, Repeat::Key(expr), errors);
            }
            "read_only" => {
                flag(input, &key, errors);
                set(&mut args.read_only, key, (), errors);
            }
            "retry" => {
                if let Some(retry) = parse_retry(input, &key, errors)? {
                    set(&mut args.retry, key, retry, errors);
                }
            }
            "timeout" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                match duration::parse_millis(&lit, "timeout") {
                    Ok(0) => errors.at(
                        lit.span(),
                        "`timeout` must be longer than zero; remove it to let attempts run as long as they need",
                    ),
                    Ok(ms) => set(&mut args.timeout_ms, key, ms, errors),
                    Err(error) => errors.push(error),
                }
            }
            "name" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if lit.value().trim().is_empty() {
                    errors.at(lit.span(), "`name` must not be empty; give the step a stable name such as \"billing::charge\"");
                } else {
                    set(&mut args.name, key, lit, errors);
                }
            }
            "dry_run" => {
                input.parse::<Token![=]>()?;
                let value = if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    if lit.value() == "default" {
                        Some(DryRun::Default)
                    } else {
                        errors.at(
                            lit.span(),
                            format!(
                                "unknown `dry_run` value {:?}; expected \"default\" or a path to a function with the step's signature (`dry_run = path::to::fn`)",
                                lit.value()
                            ),
                        );
                        None
                    }
                } else {
                    Some(DryRun::Function(input.parse()?))
                };
                if let Some(value) = value {
                    set(&mut args.dry_run, key, value, errors);
                }
            }
            "skip" => {
                let names = parse_skip(input, &key, errors)?;
                set(&mut args.skip, key, names, errors);
            }
            other => {
                errors.at(
                    key.span(),
                    format!("unknown step option `{other}`; expected one of {OPTIONS}"),
                );
                skip_value(input)?;
            }
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// `skip(a, b)`: a parenthesized list of parameter names, each named once.
fn parse_skip(input: ParseStream, key: &Ident, errors: &mut Errors) -> syn::Result<Vec<Ident>> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            "`skip` lists the parameters to leave out of the key and the stored arguments, such as `skip(client)`",
        ));
    }
    let content;
    let parens = syn::parenthesized!(content in input);
    let names = content.parse_terminated(Ident::parse_any, Token![,])?;
    if names.is_empty() {
        errors.at(
            parens.span.join(),
            "`skip()` names no parameter; list the parameters to leave out, such as `skip(client)`, or remove it",
        );
    }
    let mut seen: Vec<Ident> = Vec::new();
    for name in names {
        if seen.contains(&name) {
            errors.at(
                name.span(),
                format!("`{name}` is already in `skip(...)`; name each parameter once"),
            );
        } else {
            seen.push(name);
        }
    }
    Ok(seen)
}

/// A flag option such as `idempotent` takes no value.
fn flag(input: ParseStream, key: &Ident, errors: &mut Errors) {
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        errors.at(
            key.span(),
            format!("`{key}` takes no value; write just `{key}`"),
        );
        // The value is skipped so that the options after it are still checked.
        let _ = skip_value(input);
    }
}

/// Skips the rest of an option, up to the next top-level comma.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let proc_macro2::TokenTree::Punct(p) = &tt {
                if p.as_char() == ',' {
                    break;
                }
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// Records an option that may be given once; a second one is an error at its own span.
fn set<T>(slot: &mut Option<Setting<T>>, key: Ident, value: T, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(
            key.span(),
            format!("duplicate `{key}` option; each option may be given once"),
        );
    } else {
        *slot = Some(Setting { key, value });
    }
}

fn push_repeat(args: &mut StepArgs, key: Ident, value: Repeat, errors: &mut Errors) {
    if args
        .repeat
        .iter()
        .any(|r| r.value.option() == value.option())
    {
        errors.at(
            key.span(),
            format!("duplicate `{key}` option; each option may be given once"),
        );
        return;
    }
    args.repeat.push(Setting { key, value });
}

fn parse_retry(input: ParseStream, key: &Ident, errors: &mut Errors) -> syn::Result<Option<Retry>> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let lit: LitStr = input.parse()?;
        let name = lit.value();
        if name == "transient" || name == "none" {
            return Ok(Some(Retry::Named(name)));
        }
        errors.at(
            lit.span(),
            format!("unknown retry policy `{name}`; expected one of `transient`, `none`, or `retry(...)`"),
        );
        return Ok(None);
    }
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            "`retry` needs a policy; expected `retry = \"transient\"`, `retry = \"none\"`, or `retry(attempts = 4, initial = \"1s\", max = \"20s\", multiplier = 2.0, jitter = true)`",
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let mut policy = InlineRetry {
        attempts: 4,
        initial_ms: 1_000,
        max_ms: 20_000,
        multiplier: 2.0,
        jitter: true,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut valid = true;
    let mut initial_span = None;
    while !content.is_empty() {
        let inner = content.call(Ident::parse_any)?;
        let name = inner.to_string();
        if seen.contains(&name) {
            errors.at(
                inner.span(),
                format!("duplicate `{name}` in `retry(...)`; each key may be given once"),
            );
        }
        seen.push(name.clone());
        match name.as_str() {
            "attempts" => {
                content.parse::<Token![=]>()?;
                let lit: syn::LitInt = content.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(n) if n >= 1 => policy.attempts = n,
                    _ => {
                        valid = false;
                        errors.at(lit.span(), "`attempts` must be a whole number of at least 1 (it counts the first attempt)");
                    }
                }
            }
            "initial" | "max" => {
                content.parse::<Token![=]>()?;
                let lit: LitStr = content.parse()?;
                match duration::parse_millis(&lit, &format!("retry({name})")) {
                    Ok(ms) if name == "initial" => {
                        policy.initial_ms = ms;
                        initial_span = Some(lit.span());
                    }
                    Ok(ms) => policy.max_ms = ms,
                    Err(error) => {
                        valid = false;
                        errors.push(error);
                    }
                }
            }
            "multiplier" => {
                content.parse::<Token![=]>()?;
                let lit: Lit = content.parse()?;
                let value = match &lit {
                    Lit::Float(f) => f.base10_parse::<f64>().ok(),
                    Lit::Int(i) => i.base10_parse::<u32>().ok().map(f64::from),
                    _ => None,
                };
                match value {
                    Some(m) if m >= 1.0 && m.is_finite() => policy.multiplier = m,
                    _ => {
                        valid = false;
                        errors.at(
                            lit.span(),
                            "`multiplier` must be a number of at least 1.0, such as `2.0`",
                        );
                    }
                }
            }
            "jitter" => {
                content.parse::<Token![=]>()?;
                let lit: syn::LitBool = content.parse()?;
                policy.jitter = lit.value;
            }
            other => {
                valid = false;
                errors.at(
                    inner.span(),
                    format!("unknown `retry` key `{other}`; expected one of {RETRY_KEYS}"),
                );
                skip_value(&content)?;
            }
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    if valid && policy.initial_ms > policy.max_ms {
        errors.at(
            initial_span.unwrap_or_else(Span::call_site),
            format!(
                "`initial` ({} ms) is longer than `max` ({} ms); the first delay must not exceed the largest one",
                policy.initial_ms, policy.max_ms
            ),
        );
    }
    Ok(Some(Retry::Inline(policy)))
}
