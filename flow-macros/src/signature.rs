//! Checks on the signature of a `#[step]`, `#[workflow]` or `#[flow::main]` function that they
//! share: it is an `async fn`, a free function, with plainly named, concretely typed parameters
//! (and, for a step or workflow, a return type). Each unsupported shape is an error on the
//! offending part; only the wording differs between the macros.

use crate::errors::Errors;
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
            impls.found.is_empty().then(|| (**ty).clone())
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
