//! Validates a step: the rules that combine options, and the shapes of the function's signature
//! that a step cannot support. Produces the [`Step`] model that `expand` turns into code.

use super::parse::{DryRun, InlineRetry, Repeat, Retry, StepArgs};
use crate::errors::Errors;
use crate::signature;
use syn::{Expr, Ident, ItemFn, LitStr, Path, Type};

/// How a step was declared, with every default filled in.
pub(crate) struct Step {
    pub(crate) repeat: RepeatModel,
    pub(crate) read_only: bool,
    pub(crate) retry: RetryModel,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) name: Option<LitStr>,
    pub(crate) dry_run: DryRunModel,
    pub(crate) params: Vec<Param>,
    /// The parameters that the `idempotency_key` expression reads.
    pub(crate) key_params: Vec<Ident>,
    pub(crate) output: Type,
}

pub(crate) enum RepeatModel {
    Idempotent,
    Key(Expr),
    AtMostOnce,
}

pub(crate) enum RetryModel {
    Named(String),
    Inline(InlineRetry),
}

impl RetryModel {
    /// Whether a failed attempt may be followed by another one (and so needs `Classify`).
    pub(crate) fn retries(&self) -> bool {
        match self {
            RetryModel::Named(name) => name != "none",
            RetryModel::Inline(policy) => policy.attempts > 1,
        }
    }
}

pub(crate) enum DryRunModel {
    /// `read_only`: runs for real.
    Execute,
    Default,
    Function(Path),
}

/// A step parameter: a plain identifier and its type.
pub(crate) struct Param {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// Named in `skip(...)`: passed to the body, but not serialized, keyed or planned.
    pub(crate) skip: bool,
}

pub(crate) fn validate(args: StepArgs, item: &ItemFn, errors: &mut Errors) -> Option<Step> {
    let read_only = args.read_only.is_some();

    let mut repeat = None;
    for (i, setting) in args.repeat.into_iter().enumerate() {
        if i > 0 {
            errors.at(
                setting.key.span(),
                format!(
                    "`{}` conflicts with `{}`; a step states exactly one of `idempotent`, `idempotency_key = <expr>` or `at_most_once`",
                    setting.key,
                    repeat.as_ref().map(repeat_option).unwrap_or_default()
                ),
            );
            continue;
        }
        if let (Repeat::AtMostOnce, Some(read_only)) = (&setting.value, &args.read_only) {
            errors.at(
                setting.key.span(),
                format!(
                    "`at_most_once` conflicts with `{}`: a read-only step changes nothing and may run any number of times; remove `at_most_once`",
                    read_only.key
                ),
            );
        }
        repeat = Some(match setting.value {
            Repeat::Idempotent => RepeatModel::Idempotent,
            Repeat::Key(expr) => RepeatModel::Key(expr),
            Repeat::AtMostOnce => RepeatModel::AtMostOnce,
        });
    }
    let repeat = match repeat {
        Some(repeat) => repeat,
        None if read_only => RepeatModel::Idempotent,
        None => {
            // At the function's name: the attribute may be far above it, or carry only other
            // options; the name says which step is missing the choice.
            errors.at(
                item.sig.ident.span(),
                format!("the step `{}` must state what happens if it runs twice; add to `#[step(...)]` one of `idempotent` (running it again is harmless), `idempotency_key = <expr over the parameters>` (the external system deduplicates), or `at_most_once` (never run it twice), or `read_only` if it changes nothing", item.sig.ident),
            );
            RepeatModel::Idempotent
        }
    };
    let at_most_once = matches!(repeat, RepeatModel::AtMostOnce);

    let retry = match args.retry {
        Some(setting) => {
            if at_most_once {
                errors.at(
                    setting.key.span(),
                    "an `at_most_once` step is never retried: a retry could repeat the side effect that the step must not repeat; remove `retry` (the step fails on its first error), or make the step `idempotent` or give it an `idempotency_key` if a repeat is safe",
                );
            }
            match setting.value {
                Retry::Named(name) => RetryModel::Named(name),
                Retry::Inline(policy) => RetryModel::Inline(policy),
            }
        }
        None if at_most_once => RetryModel::Named("none".to_owned()),
        None => RetryModel::Named("transient".to_owned()),
    };

    let dry_run = match args.dry_run {
        Some(setting) if read_only => {
            errors.at(
                setting.key.span(),
                "a `read_only` step runs for real in a dry run, so it takes no `dry_run` stand-in; remove `dry_run`",
            );
            DryRunModel::Execute
        }
        Some(setting) => match setting.value {
            DryRun::Default => DryRunModel::Default,
            DryRun::Function(path) => DryRunModel::Function(path),
        },
        None if read_only => DryRunModel::Execute,
        None => DryRunModel::Default,
    };

    let signature::Checked { params, output } =
        signature::check(item, signature::Kind::Step, errors);
    let skip = args.skip.map(|s| s.value).unwrap_or_default();
    let params: Vec<Param> = params
        .into_iter()
        .filter_map(|(pat, ty)| {
            check_step_param_type(&ty, errors);
            let ident = pat?;
            let skip = skip.contains(&ident);
            if !skip {
                if let Some(span) = signature::secret_span(&ty) {
                    errors.at(
                        span,
                        format!("a step argument cannot be a `flow::Secret`: arguments are serialized for the step's key and the dry-run plan, where a secret becomes the text \"[redacted]\"; add `skip({ident})` to `#[step(...)]` to pass it to the body without storing it"),
                    );
                }
            }
            Some(Param { ident, ty, skip })
        })
        .collect();
    for name in &skip {
        if !params.iter().any(|p| p.ident == *name) {
            let names: Vec<String> = params.iter().map(|p| format!("`{}`", p.ident)).collect();
            let known = if names.is_empty() {
                "the step has no parameters".to_owned()
            } else {
                format!("its parameters are {}", names.join(", "))
            };
            errors.at(
                name.span(),
                format!(
                    "`skip({name})` names no parameter of `{}`; {known}",
                    item.sig.ident
                ),
            );
        }
    }

    let key_params = match &repeat {
        RepeatModel::Key(expr) => {
            let names: Vec<Ident> = params.iter().map(|p| p.ident.clone()).collect();
            let used = super::key::check(expr, &names, errors);
            for name in skip.iter().filter(|s| used.contains(s)) {
                errors.at(
                    name.span(),
                    format!("`{name}` is skipped, but the `idempotency_key` uses it: a skipped parameter is app state (a client, a configuration), not what identifies the call; build the key from the other parameters, or remove `{name}` from `skip(...)`"),
                );
            }
            used
        }
        _ => Vec::new(),
    };

    if !errors.is_empty() {
        return None;
    }
    Some(Step {
        repeat,
        read_only,
        retry,
        timeout_ms: args.timeout_ms.map(|s| s.value),
        name: args.name.map(|s| s.value),
        dry_run,
        params,
        key_params,
        output: output?,
    })
}

fn repeat_option(repeat: &RepeatModel) -> &'static str {
    match repeat {
        RepeatModel::Idempotent => "idempotent",
        RepeatModel::Key(_) => "idempotency_key",
        RepeatModel::AtMostOnce => "at_most_once",
    }
}

/// Step arguments are serialized (for the key and the dry-run plan) and cloned for each attempt,
/// so they cannot be exclusive borrows.
fn check_step_param_type(ty: &Type, errors: &mut Errors) {
    if let Type::Reference(reference) = ty {
        if reference.mutability.is_some() {
            errors.over(
                reference,
                "a step cannot take a `&mut` parameter: each attempt gets its own copy of the arguments and a retry or replay would not see the changes; take `&T` or `T` and return what changed",
            );
        }
    }
}
