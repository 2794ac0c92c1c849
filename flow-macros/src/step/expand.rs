//! Expands a validated step into the user's function wrapped around `run_step`: the body moves
//! into a nested `__flow_body`, the declaration becomes a registered `StepMeta`, and each bound
//! the runtime needs is checked by an `assert_*` call spanned at the user's type.

use super::parse::InlineRetry;
use super::validate::{DryRunModel, RepeatModel, RetryModel, Step};
use crate::doc::doc_string;
use crate::signature;
use crate::tidy::tidy;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

pub(crate) fn expand(step: Step, item: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let p = quote!(::flow_runtime::__private);
    let fn_name = sig.ident.to_string();
    let doc = doc_string(&attrs);

    // The body keeps the signature as written (including `mut` bindings) and the lint levels.
    let mut inner_sig = sig.clone();
    inner_sig.ident = format_ident!("__flow_body", span = sig.ident.span());
    // A parameter that only the `idempotency_key` reads is used, by the key; the body need not
    // mention it, so it must not get an `unused variable` warning there.
    let key_params = &step.key_params;
    let block = if key_params.is_empty() {
        block.to_token_stream()
    } else {
        quote! {{
            #(let _ = &#key_params;)*
            #block
        }}
    };
    let inner_attrs = attrs.iter().filter(|a| {
        ["allow", "warn", "deny", "forbid"]
            .iter()
            .any(|lint| a.path().is_ident(lint))
    });

    // The outer function only hands its arguments on, so their `mut` would be unused.
    let mut outer_sig = sig.clone();
    for input in &mut outer_sig.inputs {
        if let FnArg::Typed(typed) = input {
            if let Pat::Ident(pat) = &mut *typed.pat {
                pat.mutability = None;
            }
        }
    }

    let name = match &step.name {
        Some(lit) => lit.to_token_stream(),
        None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name)),
    };
    let repeat = match &step.repeat {
        RepeatModel::Idempotent => quote!(#p::RepeatSafety::Idempotent),
        RepeatModel::Key(expr) => {
            let text = tidy(&expr.to_token_stream());
            quote!(#p::RepeatSafety::IdempotencyKey { expr: #text })
        }
        RepeatModel::AtMostOnce => quote!(#p::RepeatSafety::AtMostOnce),
    };
    let retry = match &step.retry {
        RetryModel::Named(name) => quote!(#p::RetrySpec::Named(#name)),
        RetryModel::Inline(InlineRetry {
            attempts,
            initial_ms,
            max_ms,
            multiplier,
            jitter,
        }) => {
            let multiplier = Literal::f64_suffixed(*multiplier);
            quote!(#p::RetrySpec::Inline {
                attempts: #attempts,
                initial_ms: #initial_ms,
                max_ms: #max_ms,
                multiplier: #multiplier,
                jitter: #jitter,
            })
        }
    };
    let timeout_ms = match step.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let dry_run_spec = match &step.dry_run {
        DryRunModel::Execute => quote!(#p::DryRunSpec::Execute),
        DryRunModel::Default => quote!(#p::DryRunSpec::Default),
        DryRunModel::Function(path) => {
            let text = path.to_token_stream().to_string().replace(' ', "");
            quote!(#p::DryRunSpec::Function(#text))
        }
    };
    let read_only = step.read_only;
    let location = quote_spanned!(sig.ident.span()=> file: ::core::file!(), line: ::core::line!());

    // Checks, each spanned at the type it is about so the error points there.
    let ret = &step.output;
    let ret_span = ret.span();
    // `Result<T, E>` as written names its types directly; an alias goes through `StepReturn`.
    let (ok_ty, err_ty) = match signature::result_types(ret) {
        // Respanned to the return type, like every check: an unmet bound is then reported
        // once, at one span, whichever generated line trips it first.
        Some((ok, err)) => (respan_tokens(ok, ret_span), respan_tokens(err, ret_span)),
        None => (
            quote_spanned!(ret_span=> <#ret as #p::StepReturn>::Ok),
            quote_spanned!(ret_span=> <#ret as #p::StepReturn>::Err),
        ),
    };
    let output_type = signature::ok_type_text(ret);
    let mut checks = TokenStream::new();
    for param in &step.params {
        let ty = &param.ty;
        if param.skip {
            // Not serialized; still handed to each attempt.
            checks.extend(quote_spanned! {ty.span()=>
                #p::assert_step_arg_clone::<#ty>();
            });
            continue;
        }
        checks.extend(quote_spanned! {ty.span()=>
            #p::assert_step_arg::<#ty>();
            #p::assert_step_arg_clone::<#ty>();
        });
    }
    checks.extend(quote_spanned! {ret_span=>
        #p::assert_step_return::<#ret>();
        #p::assert_step_output::<#ok_ty>();
        #p::assert_error_message::<#err_ty>();
    });
    let retried = step.retry.retries() && !matches!(step.repeat, RepeatModel::AtMostOnce);
    if retried {
        checks.extend(quote_spanned!(ret_span=> #p::assert_classify::<#err_ty>();));
    }
    if matches!(step.dry_run, DryRunModel::Default) {
        checks.extend(quote_spanned!(ret_span=> #p::assert_dry_run_default::<#ok_ty>();));
    }
    if step.timeout_ms.is_some() {
        checks.extend(quote_spanned!(ret_span=> #p::assert_timeout_error::<#err_ty>();));
    }

    // The declared key is computed once, before the call: it keys the checkpoint and is in
    // reach of `flow::key()` in the body, in a run and in a plain call.
    let (declare_key, key) = match &step.repeat {
        RepeatModel::Key(expr) => (
            quote!(let __flow_key: ::std::string::String = ::std::string::ToString::to_string(&(#expr));),
            quote!(::core::option::Option::Some(::core::clone::Clone::clone(
                &__flow_key
            ))),
        ),
        _ => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    let keyed = matches!(step.repeat, RepeatModel::Key(_));
    let classify = if retried {
        quote_spanned!(ret_span=> ::core::option::Option::Some(#p::classifier::<#err_ty>()))
    } else {
        quote!(::core::option::Option::None)
    };
    let on_timeout = if step.timeout_ms.is_some() {
        quote_spanned!(ret_span=> ::core::option::Option::Some(#p::timeout_error::<#err_ty>()))
    } else {
        quote!(::core::option::Option::None)
    };

    // The arguments and closures handed to `run_step` are spanned at the user's types, like the
    // checks above: when a check fails, the same unmet bound in `run_step` lands on the same span
    // and the compiler reports it once, as the check's message, instead of a second time.
    // Skipped parameters are app state: not part of the key, the stored arguments or the plan.
    let args = step.params.iter().filter(|param| !param.skip).map(|param| {
        let span = param.ty.span();
        let ident = respan(&param.ident, span);
        quote_spanned!(span=> ::flow_runtime::__private::step_arg(&#ident))
    });
    let clones: Vec<TokenStream> = step
        .params
        .iter()
        .map(|param| {
            let ident = respan(&param.ident, param.ty.span());
            quote_spanned!(param.ty.span()=> ::core::clone::Clone::clone(&#ident))
        })
        .collect();
    // With no parameters the functions themselves are the closures (a `|| f()` would trip
    // clippy's redundant_closure in the user's crate).
    let body = if keyed {
        quote_spanned!(ret_span=> || ::flow_runtime::__private::with_key(
            ::core::clone::Clone::clone(&__flow_key),
            __flow_body(#(#clones),*),
        ))
    } else if clones.is_empty() {
        quote_spanned!(ret_span=> __flow_body)
    } else {
        quote_spanned!(ret_span=> || __flow_body(#(#clones),*))
    };
    let dry_run = match &step.dry_run {
        DryRunModel::Execute => body.clone(),
        DryRunModel::Default => quote_spanned! {ret_span=>
            || async { ::core::result::Result::Ok(::core::default::Default::default()) }
        },
        DryRunModel::Function(path) if clones.is_empty() => quote!(#path),
        DryRunModel::Function(path) => quote!(|| #path(#(#clones),*)),
    };
    // `::flow_runtime::__private` spanned there too: the compiler checks `run_step`'s bounds at
    // the span of the path that names it.
    let p = quote_spanned!(ret_span=> ::flow_runtime::__private);
    let call = quote_spanned! {ret_span=>
        #p::run_step(
            #p::StepSpec {
                meta: &__FLOW_STEP,
                key: #key,
                classify: #classify,
                on_timeout: #on_timeout,
                replay: {
                    #[allow(unused_imports)]
                    use #p::{NoReplay as _, SerdeReplay as _};
                    (&&#p::ReplayProbe::<#err_ty>::new()).replay()
                },
            },
            &(#(#args,)*),
            #body,
            #dry_run,
        )
        .await
    };

    // The body's braces carry the return type's span too: the compiler checks the bounds of
    // the awaited `run_step` future again at the body, and it must land on the same span.
    let outer_body = quote_spanned! {ret_span=> {
            #(#inner_attrs)*
            #inner_sig #block

            static __FLOW_STEP: #p::StepMeta = #p::StepMeta {
                name: #name,
                fn_name: #fn_name,
                repeat: #repeat,
                read_only: #read_only,
                retry: #retry,
                timeout_ms: #timeout_ms,
                dry_run: #dry_run_spec,
                doc: #doc,
                #location,
                output_type: #output_type,
                check_output: {
                    // The check of the function body, repeated in this static's own body so that
                    // an unmet bound here is the same message (reported once) and not another.
                    #p::assert_step_output::<#ok_ty>();
                    #p::check_step_output::<#ok_ty>
                },
            };
            #p::inventory::submit! { #p::StepRegistration(&__FLOW_STEP) }

            #checks

            #declare_key
            #call
        }
    };
    quote! {
        #(#attrs)*
        #vis #outer_sig #outer_body
    }
}

/// Tokens reported at another span (their meaning, and so rustdoc's rendering, is unchanged).
pub(crate) fn respan_tokens(tokens: impl ToTokens, span: Span) -> TokenStream {
    tokens
        .to_token_stream()
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut respanned =
                    proc_macro2::Group::new(group.delimiter(), respan_tokens(group.stream(), span));
                respanned.set_span(span);
                tree = proc_macro2::TokenTree::Group(respanned);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// The same name, reported at another span (so a failed bound is reported where the check is).
fn respan(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(span);
    ident
}
