//! `#[workflow]`: leaves the function as it is, registers a `WorkflowMeta` whose `invoke` calls it
//! with JSON input, and adds a typed handle of the same name in the type namespace.
//!
//! Input JSON shape: no parameters, `null`; one parameter, the argument itself; several, an
//! object keyed by parameter name.

use crate::doc::doc_string;
use crate::duration;
use crate::errors::{item_with_error, Errors};
use crate::options::{parse_options, skip_value};
use crate::schedule;
use crate::signature::{self, Kind};
use crate::step::respan_tokens;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, LitStr, Token, Type};

/// `#[workflow(...)]` options.
#[derive(Default)]
struct WorkflowArgs {
    name: Option<LitStr>,
    alert_after: Option<u32>,
    /// `units`: the workflow runs units through a helper that its body does not show.
    units: bool,
    /// `max_duration`, in milliseconds.
    max_duration_ms: Option<u64>,
    /// `schedule`: the cron expression as written, checked.
    schedule: Option<LitStr>,
    /// Whether `schedule` was given at all, also when it was malformed: the options that only
    /// a schedule takes are then not reported as lone.
    schedule_given: bool,
    /// `timezone`, by its canonical name.
    timezone: Option<String>,
    /// `catch_up`: the `CatchUp` variant.
    catch_up: Option<&'static str>,
    /// `overlap`: the `Overlap` variant.
    overlap: Option<&'static str>,
    /// The options given that only a schedule takes.
    schedule_only: Vec<Ident>,
}

/// What `expand` needs from a validated workflow.
struct Workflow {
    args: WorkflowArgs,
    params: Vec<(Ident, Type)>,
    output: Type,
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let error = syn::Error::new(error.span(), "`#[workflow]` only works on an `async fn`");
            return item_with_error(item, error);
        }
    };
    let mut errors = Errors::new();
    let args = parse_args(args, &mut errors);
    // The signature is validated on its own: a mistake in the options alone still leaves a
    // complete handle (built with the options' defaults), so the calls of `name::run(...)`
    // elsewhere compile and the option's error is the one message.
    let mut signature_errors = Errors::new();
    let workflow = validate(args, &function, &mut signature_errors);
    if let Err(error) = signature_errors.finish() {
        errors.push(error);
    }
    match (workflow, errors.finish()) {
        (Some(workflow), result) => {
            let generated = generate(&workflow, &function);
            let error = result.err().map(|e| e.to_compile_error());
            quote!(#function #generated #error)
        }
        (None, Err(error)) => {
            let stand_in = stand_in(&function);
            let with_error = item_with_error(item, error);
            quote!(#with_error #stand_in)
        }
        (None, Ok(())) => item,
    }
}

/// What stands in for the handle when the signature has errors: the type of the same name, so
/// that a call such as `name::run(&flow, x)` elsewhere does not add "undeclared type" to the
/// signature's own message. Its methods take any arguments and never return.
fn stand_in(item: &ItemFn) -> TokenStream {
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let args: Vec<Ident> = (0..item.sig.inputs.len())
        .map(|i| format_ident!("__flow_arg{i}"))
        .collect();
    let methods = ["start", "start_with", "enqueue", "run", "dry_run"].map(|name| {
        let name = Ident::new(name, Span::call_site());
        let options = (name == "start_with" || name == "enqueue")
            .then(|| quote!(_: ::flow_runtime::__private::RunOptions,));
        quote! {
            #[allow(dead_code, clippy::unused_async)]
            #vis async fn #name<__FlowOut>(_: &::flow_runtime::__private::Flow, #options #(#args: impl ::core::marker::Sized),*) -> ::core::result::Result<__FlowOut, ::flow_runtime::__private::Error> {
                #(let _ = #args;)*
                ::core::unreachable!("a workflow that did not compile")
            }
        }
    });
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}
        impl #ident {
            #(#methods)*
        }
    }
}

fn parse_args(args: TokenStream, errors: &mut Errors) -> WorkflowArgs {
    let mut parsed = WorkflowArgs::default();
    parse_options(args, errors, |key, input, duplicate, errors| {
        match key.to_string().as_str() {
            "name" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if lit.value().trim().is_empty() {
                    errors.at(lit.span(), "`name` must not be empty; give the workflow a stable name such as \"sync_records\"");
                } else if !duplicate {
                    parsed.name = Some(lit);
                }
            }
            "alert_after" => {
                input.parse::<Token![=]>()?;
                let value: syn::Lit = input.parse()?;
                let count = match &value {
                    syn::Lit::Int(lit) => lit.base10_parse::<u32>().ok().filter(|n| *n > 0),
                    _ => None,
                };
                match count {
                    Some(count) if !duplicate => parsed.alert_after = Some(count),
                    Some(_) => {}
                    None => errors.at(
                        value.span(),
                        "`alert_after` must be a positive whole number of consecutive failed runs, such as `alert_after = 3`",
                    ),
                }
            }
            "units" => {
                if input.peek(Token![=]) {
                    let value = skip_value(input)?;
                    errors.over(
                        value,
                        "`units` takes no value; write `#[workflow(units)]` for a workflow that runs units through a helper function",
                    );
                }
                parsed.units = true;
            }
            "max_duration" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                match duration::parse_millis(&lit, "max_duration") {
                    Ok(0) => errors.at(
                        lit.span(),
                        "`max_duration` must be longer than zero; remove it to let runs take as long as they need",
                    ),
                    Ok(ms) if !duplicate => parsed.max_duration_ms = Some(ms),
                    Ok(_) => {}
                    Err(error) => errors.push(error),
                }
            }
            "schedule" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                parsed.schedule_given = true;
                match schedule::check_cron(&lit.value()) {
                    Ok(()) if !duplicate => parsed.schedule = Some(lit),
                    Ok(()) => {}
                    Err(message) => errors.at(lit.span(), message),
                }
            }
            "timezone" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                parsed.schedule_only.push(key.clone());
                match schedule::check_timezone(&lit.value()) {
                    Ok(zone) if !duplicate => parsed.timezone = Some(zone),
                    Ok(_) => {}
                    Err(message) => errors.at(lit.span(), message),
                }
            }
            "catch_up" | "overlap" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                parsed.schedule_only.push(key.clone());
                let (policies, slot): (&[_], _) = if key == "catch_up" {
                    (&schedule::CATCH_UP, &mut parsed.catch_up)
                } else {
                    (&schedule::OVERLAP, &mut parsed.overlap)
                };
                match schedule::policy(&key.to_string(), &lit.value(), policies) {
                    Ok(variant) if !duplicate => *slot = Some(variant),
                    Ok(_) => {}
                    Err(message) => errors.at(lit.span(), message),
                }
            }
            other => {
                errors.at(
                    key.span(),
                    format!("unknown workflow option `{other}`; expected {OPTIONS}"),
                );
                // Skip the value so the options after it are still checked.
                skip_value(input)?;
            }
        }
        Ok(())
    });
    if !parsed.schedule_given {
        for key in &parsed.schedule_only {
            errors.at(
                key.span(),
                format!("`{key}` belongs to a schedule, and this workflow has none; add `schedule = \"0 2 * * *\"` (a cron expression) or remove `{key}`"),
            );
        }
    }
    parsed
}

/// Every workflow option, for the message about an unknown one.
const OPTIONS: &str = "`name = \"...\"`, `alert_after = <count>`, `max_duration = \"<duration>\"`, `units`, `schedule = \"<cron expression>\"`, `timezone = \"<zone>\"`, `catch_up = \"<policy>\"` or `overlap = \"<policy>\"`";

fn validate(args: WorkflowArgs, item: &ItemFn, errors: &mut Errors) -> Option<Workflow> {
    let checked = signature::check(item, Kind::Workflow, errors);
    let mut params = Vec::new();
    for (ident, ty) in checked.params {
        if let Type::Reference(reference) = &ty {
            let owned = match &*reference.elem {
                Type::Path(path) if path.path.is_ident("str") => {
                    "`String` instead of `&str`".to_owned()
                }
                Type::Slice(_) => "`Vec<T>` instead of `&[T]`".to_owned(),
                _ => "the owned type instead of a reference".to_owned(),
            };
            errors.over(
                reference,
                format!("workflow inputs are stored as JSON, so they must be owned; take {owned}"),
            );
        }
        if let Some(span) = signature::secret_span(&ty) {
            errors.at(
                span,
                "a workflow input cannot be a `flow::Secret`: inputs are stored as JSON, where a secret becomes the text \"[redacted]\"; register the secret (or the client that uses it) as app state with `Flow::builder().state(...)` and read it with `flow::state::<T>()`",
            );
        }
        if let Some(ident) = ident {
            params.push((ident, ty));
        }
    }
    if !errors.is_empty() {
        return None;
    }
    Some(Workflow {
        args,
        params,
        output: checked.output?,
    })
}

fn generate(workflow: &Workflow, item: &ItemFn) -> TokenStream {
    let p = quote!(::flow_runtime::__private);
    let vis = &item.vis;
    let fn_ident = &item.sig.ident;
    let fn_name = fn_ident.to_string();
    let name = match &workflow.args.name {
        Some(lit) => lit.value(),
        None => fn_name.clone(),
    };
    let doc = doc_string(&item.attrs);
    let alert_after = match workflow.args.alert_after {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let location = quote_spanned!(fn_ident.span()=> file: ::core::file!(), line: ::core::line!());
    let units = workflow.args.units || crate::units::calls_units(&item.block);

    let idents: Vec<&Ident> = workflow.params.iter().map(|(i, _)| i).collect();
    let types: Vec<&Type> = workflow.params.iter().map(|(_, t)| t).collect();
    let param_names: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let ret = &workflow.output;
    let ret_span = ret.span();
    // The handle's signatures name the types of a `Result<T, E>` as written, so its rustdoc
    // shows them; an alias (`AppResult<T>`) goes through `StepReturn`. Respanned to the return
    // type like every check, so that an unmet bound is reported once.
    let (ok_ty, err_ty) = match signature::result_types(ret) {
        Some((ok, err)) => (respan_tokens(ok, ret_span), respan_tokens(err, ret_span)),
        None => (
            quote_spanned!(ret_span=> <#ret as #p::StepReturn>::Ok),
            quote_spanned!(ret_span=> <#ret as #p::StepReturn>::Err),
        ),
    };

    // The handle's own parameters must not collide with the workflow's.
    let flow_arg = free_name("flow", &param_names);
    let options_arg = free_name("options", &param_names);

    let input = format_ident!("__flow_input");
    // Code that needs a bound on a user's type is spanned at that type (the `__private` path too,
    // which is where the compiler reports a function's bounds): when a check fails, the same
    // unmet bound here lands on the same span and is reported once.
    let at = |span: Span| quote_spanned!(span=> ::flow_runtime::__private);
    let encode = match idents.len() {
        0 => quote!(::core::result::Result::Ok(#p::serde_json::Value::Null)),
        1 => {
            let (ident, ty) = (idents[0], types[0]);
            let pt = at(ty.span());
            let ident = respan(ident, ty.span());
            quote_spanned!(ty.span()=> #pt::encode(&#ident))
        }
        _ => {
            let fields = workflow.params.iter().map(|(ident, ty)| {
                let pt = at(ty.span());
                let name = ident.to_string();
                let ident = respan(ident, ty.span());
                quote_spanned!(ty.span()=> (#name, #pt::encode(&#ident)))
            });
            quote!(#p::encode_fields(::std::vec![#(#fields),*]))
        }
    };
    let decode = match idents.len() {
        0 => quote!(let _ = #input;),
        1 => {
            let (ident, ty) = (idents[0], types[0]);
            let pt = at(ty.span());
            quote_spanned!(ty.span()=> let #ident: #ty = #pt::decode_input(#name, #input)?;)
        }
        _ => {
            let fields = workflow.params.iter().map(|(ident, ty)| {
                let pt = at(ty.span());
                let field = ident.to_string();
                quote_spanned!(ty.span()=> let #ident: #ty = #pt::decode_field(#name, &#input, #field)?;)
            });
            quote! {
                #(#fields)*
                let _ = #input;
            }
        }
    };
    let pr = at(ret_span);

    // The checks open every generated body that uses the types: the compiler deduplicates a
    // failed check only against later errors in the same body, and identical check errors
    // against each other.
    let mut checks = TokenStream::new();
    for ty in &types {
        let pt = at(ty.span());
        checks.extend(quote_spanned!(ty.span()=> #pt::assert_workflow_value::<#ty>();));
    }
    checks.extend(quote_spanned! {ret_span=>
        #pr::assert_step_return::<#ret>();
        #pr::assert_workflow_value::<#ok_ty>();
        #pr::assert_error_message::<#err_ty>();
    });

    let max_duration = match workflow.args.max_duration_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let (schedule, schedule_input) = match &workflow.args.schedule {
        None => (quote!(::core::option::Option::None), TokenStream::new()),
        Some(cron) => {
            let timezone = workflow.args.timezone.as_deref().unwrap_or("UTC");
            let catch_up = Ident::new(
                workflow.args.catch_up.unwrap_or(schedule::CATCH_UP[0].1),
                Span::call_site(),
            );
            let overlap = Ident::new(
                workflow.args.overlap.unwrap_or(schedule::OVERLAP[0].1),
                Span::call_site(),
            );
            // The input of a scheduled run: each parameter's `Default`, encoded as `encode`
            // encodes the arguments of a call. The bound is checked at each parameter's type.
            let defaults = match types.len() {
                0 => quote!(::core::result::Result::Ok(#p::serde_json::Value::Null)),
                1 => {
                    let ty = types[0];
                    let pt = at(ty.span());
                    quote_spanned!(ty.span()=> #pt::encode(&#pt::scheduled_input::<#ty>()))
                }
                _ => {
                    let fields = workflow.params.iter().map(|(ident, ty)| {
                        let pt = at(ty.span());
                        let name = ident.to_string();
                        quote_spanned!(ty.span()=> (#name, #pt::encode(&#pt::scheduled_input::<#ty>())))
                    });
                    quote!(#p::encode_fields(::std::vec![#(#fields),*]))
                }
            };
            (
                quote! {
                    ::core::option::Option::Some(#p::ScheduleSpec {
                        cron: #cron,
                        timezone: #timezone,
                        catch_up: #p::CatchUp::#catch_up,
                        overlap: #p::Overlap::#overlap,
                        input: __flow_schedule_input,
                    })
                },
                quote! {
                    fn __flow_schedule_input() -> ::core::result::Result<#p::serde_json::Value, ::std::string::String> {
                        #checks
                        #p::schedule_input(#defaults)
                    }
                },
            )
        }
    };

    let outcome = quote_spanned! {ret_span=>
        ::core::result::Result::Ok(match __flow_result {
            ::core::result::Result::Ok(value) => #pr::encode(&value).map_err(|error| #pr::WorkflowFailure {
                message: ::std::format!("the output could not be serialized: {error}"),
            }),
            ::core::result::Result::Err(error) => ::core::result::Result::Err(#pr::failure(&error)),
        })
    };
    let handle_doc = format!(
        "Typed handle of the `{name}` workflow: start it, run it, dry-run it, look up its metadata."
    );
    let run_handle = quote!(#p::RunHandle<#ok_ty, #err_ty>);
    let call = quote! {
        move |#input: #p::serde_json::Value| async move {
            #decode
            ::core::result::Result::<_, #p::InputError>::Ok(#fn_ident(#(#idents),*).await)
        }
    };
    let start_typed = quote_spanned! {ret_span=>
        #pr::start_typed(#flow_arg, &__FLOW_WORKFLOW, #options_arg, #input, #call).await
    };
    let dry_run_typed = quote_spanned! {ret_span=>
        #pr::dry_run_typed(#flow_arg, &__FLOW_WORKFLOW, #input, #call).await
    };

    quote! {
        #[doc = #handle_doc]
        #[allow(non_camel_case_types)]
        #vis struct #fn_ident {}

        const _: () = {
            static __FLOW_WORKFLOW: #p::WorkflowMeta = #p::WorkflowMeta {
                name: #name,
                fn_name: #fn_name,
                params: &[#(#param_names),*],
                units: #units,
                alert_after: #alert_after,
                max_duration_ms: #max_duration,
                schedule: #schedule,
                doc: #doc,
                #location,
                invoke: __flow_invoke,
                check_input: __flow_check_input,
            };

            #[allow(unused_variables)]
            fn __flow_check_input(#input: &#p::serde_json::Value) -> ::core::result::Result<(), #p::InputError> {
                #checks
                let #input = ::core::clone::Clone::clone(#input);
                #decode
                ::core::result::Result::Ok(())
            }

            async fn __flow_call(#input: #p::serde_json::Value) -> #p::InvokeResult {
                #checks
                #decode
                let __flow_result = #fn_ident(#(#idents),*).await;
                #outcome
            }

            fn __flow_invoke(#input: #p::serde_json::Value) -> #p::BoxFuture<'static, #p::InvokeResult> {
                ::std::boxed::Box::pin(__flow_call(#input))
            }

            #schedule_input

            #p::inventory::submit! { #p::WorkflowRegistration(&__FLOW_WORKFLOW) }

            impl #fn_ident {
                /// The workflow's stable name.
                #vis const NAME: &'static str = #name;

                /// The workflow's registered metadata.
                #vis fn meta() -> &'static #p::WorkflowMeta {
                    &__FLOW_WORKFLOW
                }

                /// Starts a run with a generated run id.
                #vis async fn start(#flow_arg: &#p::Flow, #(#idents: #types),*) -> ::core::result::Result<#run_handle, #p::Error> {
                    #checks
                    Self::start_with(#flow_arg, #p::RunOptions::new(), #(#idents),*).await
                }

                /// Starts a run with these options; a run id that already finished returns its
                /// stored outcome and executes nothing.
                #vis async fn start_with(#flow_arg: &#p::Flow, #options_arg: #p::RunOptions, #(#idents: #types),*) -> ::core::result::Result<#run_handle, #p::Error> {
                    #checks
                    let #input = #encode;
                    #start_typed
                }

                /// Enqueues a run for a worker (`app worker`, `Flow::worker`) and returns its id at
                /// once; an id that exists is returned as it is (the id deduplicates).
                #vis async fn enqueue(#flow_arg: &#p::Flow, #options_arg: #p::RunOptions, #(#idents: #types),*) -> ::core::result::Result<#p::RunId, #p::Error> {
                    #checks
                    let #input = #encode;
                    #pr::enqueue_typed(#flow_arg, &__FLOW_WORKFLOW, #options_arg, #input).await
                }

                /// Starts a run and waits for its outcome.
                #vis async fn run(#flow_arg: &#p::Flow, #(#idents: #types),*) -> ::core::result::Result<#ok_ty, #p::RunError<#err_ty>> {
                    #checks
                    let __flow_handle = Self::start(#flow_arg, #(#idents),*).await?;
                    __flow_handle.outcome().await
                }

                /// Dry-runs the workflow: read-only steps run for real, every other step is
                /// skipped and recorded with a stand-in output.
                #vis async fn dry_run(#flow_arg: &#p::Flow, #(#idents: #types),*) -> ::core::result::Result<#p::DryRun<#ok_ty, #err_ty>, #p::Error> {
                    #checks
                    let #input = #encode;
                    #dry_run_typed
                }
            }
        };
    }
}

fn free_name(preferred: &str, taken: &[String]) -> Ident {
    if taken.iter().any(|t| t == preferred) {
        Ident::new(&format!("__flow_{preferred}"), Span::call_site())
    } else {
        Ident::new(preferred, Span::call_site())
    }
}

/// The same name at another span, so that a bound on its type is reported at the type.
fn respan(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(span);
    ident
}
