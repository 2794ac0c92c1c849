//! Checks on the signature of a `#[step]` or `#[workflow]` function that both share: it is an
//! `async fn`, a free function, with plainly named, concretely typed parameters and a return
//! type. Each unsupported shape is an error on the offending part.

use crate::errors::Errors;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Step,
    Workflow,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Workflow => "workflow",
        }
    }
}

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
                "`#[{what}]` only works on an `async fn`; write `async fn {}(...)`",
                sig.ident
            ),
        );
    }

    for param in &sig.generics.params {
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
            FnArg::Receiver(receiver) => errors.over(
                receiver,
                format!(
                    "a {what} cannot take `self`: a {what} is a free function whose arguments are stored; move it out of the `impl` block and pass what it needs as parameters"
                ),
            ),
            FnArg::Typed(typed) => {
                let ident = match &*typed.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
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
                errors.at(
                    *span,
                    format!(
                        "a {what} cannot return `impl Trait`: its output is stored, so it needs a concrete type; name the type instead"
                    ),
                );
            }
            impls.found.is_empty().then(|| (**ty).clone())
        }
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
