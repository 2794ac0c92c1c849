//! Checks on the signature of a `#[step]`, `#[workflow]` or `#[flow::main]` function that they
//! share: it is an `async fn`, a free function, with plainly named, concretely typed parameters
//! (and, for a step or workflow, a return type). Each unsupported shape is an error on the
//! offending part; only the wording differs between the macros.

use crate::errors::Errors;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Step,
    Workflow,
    Main,
}

impl Kind {
    /// The attribute as the user writes it.
    fn attribute(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Workflow => "workflow",
            Kind::Main => "flow::main",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Workflow => "workflow",
            Kind::Main => "main",
        }
    }
}

const MAIN_SETTINGS: &str = "such as `settings: Settings`";

/// The parameters (name, if it is a plain one, and type) and the return type.
pub(crate) struct Checked {
    pub(crate) params: Vec<(Option<Ident>, Type)>,
    pub(crate) output: Option<Type>,
}

pub(crate) fn check(item: &ItemFn, kind: Kind, errors: &mut Errors) -> Checked {
    let sig = &item.sig;
    let what = kind.name();

    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            format!(
                "`#[{}]` only works on an `async fn`; write `async fn {}(...)`",
                kind.attribute(),
                sig.ident
            ),
        );
    }

    if kind == Kind::Main {
        if !sig.generics.params.is_empty() {
            errors.over(
                &sig.generics,
                format!("`main` cannot be generic; remove the parameters and name the settings type, {MAIN_SETTINGS}"),
            );
        }
        if let Some(where_clause) = &sig.generics.where_clause {
            errors.over(
                where_clause,
                "`main` cannot have a `where` clause; remove it and name the settings type",
            );
        }
    }
    for param in sig.generics.params.iter().filter(|_| kind != Kind::Main) {
        match param {
            GenericParam::Lifetime(_) if kind == Kind::Step => {}
            GenericParam::Lifetime(lifetime) => errors.over(
                lifetime,
                "a workflow cannot have lifetime parameters: its inputs are stored as JSON and must be owned",
            ),
            GenericParam::Type(ty) => errors.at(
                ty.ident.span(),
                format!(
                    "a {what} cannot be generic over types: flow stores its arguments and output, so they need concrete types; replace `{}` with the type it stands for",
                    ty.ident
                ),
            ),
            GenericParam::Const(konst) => errors.at(
                konst.ident.span(),
                format!(
                    "a {what} cannot have const parameters; pass `{}` as an ordinary parameter",
                    konst.ident
                ),
            ),
        }
    }

    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) if kind == Kind::Main => errors.over(
                receiver,
                format!("`main` cannot take `self`: it is the program's entry point, a free function; its one parameter, if any, is the settings, {MAIN_SETTINGS}"),
            ),
            FnArg::Receiver(receiver) => errors.over(
                receiver,
                format!(
                    "a {what} cannot take `self`: a {what} is a free function whose arguments are stored; move it out of the `impl` block and pass what it needs as parameters"
                ),
            ),
            FnArg::Typed(typed) => {
                let ident = match &*typed.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
                    other if kind == Kind::Main => {
                        errors.over(
                            other,
                            format!("the settings parameter of `main` must be a plain name, {MAIN_SETTINGS}; destructure it in the body instead"),
                        );
                        None
                    }
                    other => {
                        errors.over(
                            other,
                            format!(
                                "a {what} parameter must be a plain name, such as `pair: (u8, u8)`, because its name identifies the argument; destructure it in the body instead"
                            ),
                        );
                        None
                    }
                };
                let mut impls = ImplTraits::default();
                impls.visit_type(&typed.ty);
                for span in impls.found {
                    if kind == Kind::Main {
                        errors.at(span, format!("the settings of `main` need a named type, not `impl Trait`; write the type, {MAIN_SETTINGS}"));
                        continue;
                    }
                    errors.at(
                        span,
                        format!(
                            "a {what} cannot take an `impl Trait` parameter: its arguments are serialized and stored, so they need a concrete type; name the type instead"
                        ),
                    );
                }
                params.push((ident, (*typed.ty).clone()));
            }
        }
    }

    let output = match &sig.output {
        ReturnType::Type(_, ty) => {
            let mut impls = ImplTraits::default();
            impls.visit_type(ty);
            for span in &impls.found {
                if kind == Kind::Main {
                    errors.at(
                        *span,
                        "`main` cannot return `impl Trait`; return nothing or `Result<(), E>`",
                    );
                    continue;
                }
                errors.at(
                    *span,
                    format!(
                        "a {what} cannot return `impl Trait`: its output is stored, so it needs a concrete type; name the type instead"
                    ),
                );
            }
            if impls.found.is_empty() && kind != Kind::Main && is_surely_not_result(ty) {
                let ty_text = crate::tidy::tidy_type(&ty.to_token_stream());
                errors.over(
                    ty,
                    format!(
                        "a {what} must return `Result<T, E>`, but this one returns `{ty_text}`; write `-> Result<{ty_text}, flow::Failure>` (or your own error type): flow needs the error to decide about retries and to record the failure"
                    ),
                );
                None
            } else {
                impls.found.is_empty().then(|| (**ty).clone())
            }
        }
        ReturnType::Default if kind == Kind::Main => None,
        ReturnType::Default => {
            errors.at(
                sig.ident.span(),
                format!(
                    "a {what} must return `Result<T, E>`; add a return type such as `-> Result<(), flow::Failure>`"
                ),
            );
            None
        }
    };

    Checked { params, output }
}

#[derive(Default)]
struct ImplTraits {
    found: Vec<proc_macro2::Span>,
}

impl<'ast> Visit<'ast> for ImplTraits {
    fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
        self.found.push(node.impl_token.span());
    }
}

/// Types that cannot be a `Result` (or an alias of one): those written without a path, and the
/// standard library's non-`Result` types by their usual names. Any other path may be an alias,
/// so it is left to the trait check.
fn is_surely_not_result(ty: &Type) -> bool {
    const NOT_RESULT: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "char", "str", "String", "Vec", "Option", "Box", "HashMap",
        "BTreeMap", "HashSet", "BTreeSet", "VecDeque",
    ];
    match ty {
        Type::Paren(inner) => is_surely_not_result(&inner.elem),
        Type::Group(inner) => is_surely_not_result(&inner.elem),
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| NOT_RESULT.contains(&last.ident.to_string().as_str())),
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) | Type::ImplTrait(_) => false,
        _ => true,
    }
}

/// The `T` and `E` of a return type written `Result<T, E>` (a path ending in `Result` with two
/// type arguments), so that generated signatures can name them directly; `None` for anything
/// else (an alias such as `AppResult<T>`), which is then reached through `StepReturn`.
pub(crate) fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    let args = result_args(ty);
    match args.as_slice() {
        [ok, err] => Some((ok, err)),
        _ => None,
    }
}

/// The success type as written, for display: the first type argument of a path ending in
/// `Result` (also of an alias such as `AppResult<T>`), or the whole type.
pub(crate) fn ok_type_text(ty: &Type) -> String {
    match result_args(ty).first() {
        Some(ok) => crate::tidy::tidy_type(&ok.to_token_stream()),
        None => crate::tidy::tidy_type(&ty.to_token_stream()),
    }
}

fn result_args(ty: &Type) -> Vec<&Type> {
    let Type::Path(path) = ty else {
        return Vec::new();
    };
    let Some(last) = path.path.segments.last() else {
        return Vec::new();
    };
    if path.qself.is_some() || !last.ident.to_string().ends_with("Result") {
        return Vec::new();
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect()
}

/// Where a type written in a signature mentions `Secret` (`flow::Secret`, `Option<Secret>`,
/// `Vec<Secret>`, `&Secret`, ...): such a value would be stored as the text "[redacted]". A check
/// of the type as written; a secret inside a struct is refused when it is deserialized.
pub(crate) fn secret_span(ty: &Type) -> Option<proc_macro2::Span> {
    #[derive(Default)]
    struct Secrets(Option<proc_macro2::Span>);
    impl<'ast> Visit<'ast> for Secrets {
        fn visit_path_segment(&mut self, node: &'ast syn::PathSegment) {
            if node.ident == "Secret" && self.0.is_none() {
                self.0 = Some(node.ident.span());
            }
            syn::visit::visit_path_segment(self, node);
        }
    }
    let mut secrets = Secrets::default();
    secrets.visit_type(ty);
    secrets.0
}
