//! `#[flow::main]`: turns `async fn main(settings: S)` into the program's synchronous `main`,
//! which hands everything to `__private::main_entry`; the user's body becomes the setup hook that
//! runs once the settings are loaded and logging is up.
//!
//! The module is named `entry` because a `src/main.rs` would make Cargo see a binary target.

use crate::doc::doc_string;
use crate::errors::{item_with_error, Errors};
use crate::options::{parse_options, skip_value};
use crate::signature::{self, Kind};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Token, Type};

/// `#[flow::main(...)]` options, each with the literal as written so errors can point at it.
#[derive(Default)]
struct MainArgs {
    env_prefix: Option<LitStr>,
}

/// What `generate` needs from a validated `main`.
struct Main {
    env_prefix: Option<String>,
    /// The settings parameter's type, if `main` takes one.
    settings: Option<Type>,
    /// The declared return type; `None` for `()` written as nothing.
    output: Option<Type>,
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                "`#[flow::main]` only works on an `async fn main`",
            );
            return item_with_error(item, error);
        }
    };
    let mut errors = Errors::new();
    let args = parse_args(args, &mut errors);
    let main = validate(args, &function, &mut errors);
    match (main, errors.finish()) {
        (Some(main), Ok(())) => generate(&main, &function),
        (_, Err(error)) => item_with_error(fallback(&function), error),
        (None, Ok(())) => fallback(&function),
    }
}

fn parse_args(args: TokenStream, errors: &mut Errors) -> MainArgs {
    let mut parsed = MainArgs::default();
    parse_options(args, errors, |key, input, duplicate, errors| {
        match key.to_string().as_str() {
            "env_prefix" => {
                input.parse::<Token![=]>()?;
                if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    if !duplicate {
                        parsed.env_prefix = Some(lit);
                    }
                } else {
                    let value = skip_value(input)?;
                    errors.over(
                        value,
                        "`env_prefix` takes a string, such as `env_prefix = \"SYNC_\"`",
                    );
                }
            }
            other => {
                errors.at(
                    key.span(),
                    format!(
                        "unknown `flow::main` option `{other}`; the only option is `env_prefix = \"...\"`, such as `env_prefix = \"SYNC_\"`"
                    ),
                );
                // Skip the value so the options after it are still checked.
                skip_value(input)?;
            }
        }
        Ok(())
    });
    parsed
}

fn validate(args: MainArgs, item: &ItemFn, errors: &mut Errors) -> Option<Main> {
    let sig = &item.sig;
    if sig.ident != "main" {
        errors.at(
            sig.ident.span(),
            format!(
                "`#[flow::main]` goes on the program's `main` function; rename `{}` to `main`",
                sig.ident
            ),
        );
    }
    let checked = signature::check(item, Kind::Main, errors);
    if sig.inputs.len() > 1 {
        let extra: Vec<&FnArg> = sig.inputs.iter().skip(1).collect();
        errors.over(
            quote!(#(#extra)*),
            "`main` takes at most one parameter, the settings; move the other values into the settings type",
        );
    }
    let env_prefix = args.env_prefix.and_then(|lit| {
        let value = lit.value();
        match env_prefix_problem(&value) {
            None => Some(value),
            Some(message) => {
                errors.at(lit.span(), message);
                None
            }
        }
    });
    if !errors.is_empty() {
        return None;
    }
    Some(Main {
        env_prefix,
        settings: checked.params.into_iter().next().map(|(_, ty)| ty),
        output: checked.output,
    })
}

/// Why `prefix` cannot be a prefix of environment variable names, if it cannot.
fn env_prefix_problem(prefix: &str) -> Option<String> {
    let is_valid = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_uppercase())
            && p.ends_with('_')
            && p.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if is_valid(prefix) {
        return None;
    }
    // Suggest the nearest valid prefix: `sync` -> `SYNC_`, `my-app` -> `MY_APP_`.
    let mut suggestion: String = prefix
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    suggestion.push('_');
    if !is_valid(&suggestion) {
        suggestion = "SYNC_".to_owned();
    }
    let identifier_like = prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    Some(if identifier_like {
        format!("`env_prefix` must be upper case and end with `_`, such as `{suggestion}`")
    } else {
        format!(
            "`env_prefix` must start with a letter and hold only `A`-`Z`, `0`-`9` and `_`, ending with `_`, such as `{suggestion}`"
        )
    })
}

fn generate(main: &Main, item: &ItemFn) -> TokenStream {
    let p = quote!(::flow_runtime::__private);
    // A `__private` path spanned at a user's type, so that the checks and the calls that repeat
    // their bounds point at the user's code, not at the attribute.
    let at = |span: Span| quote_spanned!(span=> ::flow_runtime::__private);
    let attrs = &item.attrs;
    let vis = &item.vis;
    let mut setup_sig = item.sig.clone();
    setup_sig.ident = Ident::new("__flow_setup", Span::call_site());
    let body = &item.block;

    let doc = doc_string(attrs);
    let env_prefix = match &main.env_prefix {
        Some(prefix) => quote!(::core::option::Option::Some(#prefix)),
        None => quote!(::core::option::Option::None),
    };

    // The calls whose bounds repeat a check name the checked type explicitly and are spanned at
    // it, so an unmet bound is reported at the same tokens as the check, and only once.
    let mut checks = TokenStream::new();
    let (entry, closure_param, setup_call) = match &main.settings {
        Some(ty) => {
            let pt = at(ty.span());
            checks.extend(quote_spanned!(ty.span()=> #pt::assert_app_settings::<#ty>();));
            (
                quote_spanned!(ty.span()=> #pt::main_entry::<#ty, _, _>(__flow_app, __flow_hook)),
                quote!(__flow_settings: #ty),
                quote!(__flow_setup(__flow_settings)),
            )
        }
        None => (
            quote!(#p::main_entry(__flow_app, __flow_hook)),
            quote!(_: #p::NoSettings),
            quote!(__flow_setup()),
        ),
    };
    let outcome = match &main.output {
        Some(ty) => {
            let pr = at(ty.span());
            checks.extend(quote_spanned!(ty.span()=> #pr::assert_main_outcome::<#ty>();));
            quote_spanned!(ty.span()=> #pr::main_outcome::<#ty>(__flow_outcome))
        }
        None => quote!(#p::main_outcome(__flow_outcome)),
    };

    quote! {
        #(#attrs)*
        #vis fn main() -> ::std::process::ExitCode {
            #setup_sig #body

            #checks
            let __flow_app = #p::AppInfo {
                    name: match ::core::option_env!("CARGO_BIN_NAME") {
                        ::core::option::Option::Some(name) => name,
                        // Test and bench targets have no `CARGO_BIN_NAME`.
                        ::core::option::Option::None => ::core::env!("CARGO_CRATE_NAME"),
                    },
                    version: ::core::env!("CARGO_PKG_VERSION"),
                    env_prefix: #env_prefix,
                doc: #doc,
            };
            let __flow_hook = move |#closure_param| async move {
                let __flow_outcome = #setup_call.await;
                #outcome
            };
            #entry
        }
    }
}

/// What stands in for `main` when the attribute has errors: a plain `fn main` holding the user's
/// function, so the body is still checked and neither "`main` is not allowed to be `async`" nor
/// "`main` function not found" joins the attribute's own errors.
fn fallback(item: &ItemFn) -> TokenStream {
    let attrs = &item.attrs;
    let vis = &item.vis;
    // A `self` parameter outside an `impl` is an error of its own; leave the function out.
    let has_receiver = item
        .sig
        .inputs
        .iter()
        .any(|input| matches!(input, FnArg::Receiver(_)));
    let inner = if has_receiver {
        TokenStream::new()
    } else {
        let sig = &item.sig;
        let body = &item.block;
        quote!(#[allow(dead_code)] #sig #body)
    };
    quote! {
        #(#attrs)*
        #vis fn main() {
            #inner
        }
    }
}
