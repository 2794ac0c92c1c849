//! `#[derive(Classify)]`: reads `#[flow(...)]` marks on an error enum's variants (or on a struct)
//! and implements `Classify` from them. Unmarked means permanent, so nothing is retried unless
//! someone said it may be.

use crate::duration;
use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Member, Type};

const KEYS: &str = "`transient`, `permanent`, `transparent` or `retry_after = \"<duration>\"`";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Transient,
    Permanent,
    Transparent,
}

impl Class {
    fn key(self) -> &'static str {
        match self {
            Class::Transient => "transient",
            Class::Permanent => "permanent",
            Class::Transparent => "transparent",
        }
    }
}

/// The marks of one variant (or of the struct), checked.
struct Variant {
    /// `Self::Name` or `Self`.
    path: TokenStream,
    class: Class,
    /// The field a `transparent` variant delegates to.
    delegate: Option<(Member, Type)>,
    retry_after: RetryAfter,
}

enum RetryAfter {
    None,
    Const(u64),
    Field(Member),
}

pub(crate) fn expand(item: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(item) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::new();
    let variants = match &input.data {
        Data::Enum(data) => {
            for attr in flow_attrs(&input.attrs) {
                errors.at(
                    attr.path().span(),
                    "on an enum, put `#[flow(...)]` on the variants, not on the enum; unmarked variants are permanent",
                );
            }
            data.variants
                .iter()
                .map(|v| {
                    let ident = &v.ident;
                    variant(
                        quote!(Self::#ident),
                        ident,
                        &v.attrs,
                        &v.fields,
                        &mut errors,
                    )
                })
                .collect()
        }
        Data::Struct(data) => {
            vec![variant(
                quote!(Self),
                &input.ident,
                &input.attrs,
                &data.fields,
                &mut errors,
            )]
        }
        Data::Union(data) => {
            errors.at(
                data.union_token.span,
                "`Classify` cannot be derived for a union; derive it for an enum or a struct, or implement it by hand",
            );
            Vec::new()
        }
    };
    if let Err(error) = errors.finish() {
        // A stand-in impl (every value permanent), so that the steps using the type do not
        // add "`Classify` is not implemented" to the attribute's own message.
        let error = error.to_compile_error();
        let p = quote!(::flow_runtime::__private);
        let ty = &input.ident;
        let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
        return quote! {
            #error
            impl #impl_generics #p::Classify for #ty #ty_generics #where_clause {
                fn class(&self) -> #p::ErrorClass {
                    #p::ErrorClass::Permanent
                }
            }
        };
    }

    let p = quote!(::flow_runtime::__private);
    let ty = &input.ident;
    let mut generics = input.generics.clone();
    if generics.type_params().next().is_some() {
        let where_clause = generics.make_where_clause();
        for (_, field_ty) in variants.iter().filter_map(|v| v.delegate.as_ref()) {
            where_clause
                .predicates
                .push(syn::parse_quote!(#field_ty: #p::Classify));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let (class_body, retry_after_body) = if variants.is_empty() {
        (quote!(match *self {}), quote!(match *self {}))
    } else {
        let class_arms = variants.iter().map(|v| {
            let path = &v.path;
            match (&v.class, &v.delegate) {
                (Class::Transparent, Some((member, field_ty))) => {
                    let call = quote_spanned!(field_ty.span()=> <#field_ty as #p::Classify>::class(__flow_inner));
                    quote!(#path { #member: __flow_inner, .. } => #call,)
                }
                (Class::Transient, _) => quote!(#path { .. } => #p::ErrorClass::Transient,),
                _ => quote!(#path { .. } => #p::ErrorClass::Permanent,),
            }
        });
        let retry_arms = variants.iter().map(|v| {
            let path = &v.path;
            match (&v.delegate, &v.retry_after) {
                (Some((member, field_ty)), _) => {
                    let call = quote_spanned!(field_ty.span()=> <#field_ty as #p::Classify>::retry_after(__flow_inner));
                    quote!(#path { #member: __flow_inner, .. } => #call,)
                }
                (None, RetryAfter::Const(ms)) => quote! {
                    #path { .. } => ::core::option::Option::Some(::core::time::Duration::from_millis(#ms)),
                },
                (None, RetryAfter::Field(member)) => quote! {
                    #path { #member: __flow_delay, .. } => ::core::convert::From::from(::core::clone::Clone::clone(__flow_delay)),
                },
                (None, RetryAfter::None) => quote!(#path { .. } => ::core::option::Option::None,),
            }
        });
        (
            quote!(match self { #(#class_arms)* }),
            quote!(match self { #(#retry_arms)* }),
        )
    };

    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #p::Classify for #ty #ty_generics #where_clause {
                fn class(&self) -> #p::ErrorClass {
                    #class_body
                }

                fn retry_after(&self) -> ::core::option::Option<::core::time::Duration> {
                    #retry_after_body
                }
            }
        };
    }
}

fn flow_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("flow"))
}

fn variant(
    path: TokenStream,
    ident: &Ident,
    attrs: &[Attribute],
    fields: &Fields,
    errors: &mut Errors,
) -> Variant {
    let mut class: Option<(Class, Span)> = None;
    let mut retry_after: Option<(u64, Span)> = None;
    for attr in flow_attrs(attrs) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let span = meta.path.span();
            let mark = match key.as_str() {
                "transient" => Some(Class::Transient),
                "permanent" => Some(Class::Permanent),
                "transparent" => Some(Class::Transparent),
                "retry_after" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match duration::parse_millis(&lit, "retry_after") {
                        Ok(_) if retry_after.is_some() => {
                            errors.at(span, "duplicate `retry_after`; each key may be given once");
                        }
                        Ok(ms) => retry_after = Some((ms, span)),
                        Err(error) => errors.push(error),
                    }
                    None
                }
                _ => {
                    errors.at(
                        span,
                        format!(
                            "unknown `flow` attribute `{}`; expected one of {KEYS}",
                            quote::ToTokens::to_token_stream(&meta.path)
                        ),
                    );
                    if meta.input.peek(syn::Token![=]) {
                        let _: syn::Expr = meta.value()?.parse()?;
                    }
                    None
                }
            };
            if let Some(mark) = mark {
                match class {
                    Some((first, _)) if first == mark => errors.at(
                        span,
                        format!("duplicate `{}`; each key may be given once", mark.key()),
                    ),
                    Some((first, _)) => errors.at(
                        span,
                        format!(
                            "`{}` conflicts with `{}`; an error is exactly one of `transient`, `permanent` (the default) or `transparent`",
                            mark.key(),
                            first.key()
                        ),
                    ),
                    None => class = Some((mark, span)),
                }
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }

    // `#[flow(retry_after)]` on a field: the field holds the delay.
    let mut field_delay: Option<(Member, Span)> = None;
    for (index, field) in fields.iter().enumerate() {
        for attr in flow_attrs(&field.attrs) {
            let result = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                if meta.path.is_ident("retry_after") {
                    if field_delay.is_some() {
                        errors.at(
                            span,
                            "duplicate `#[flow(retry_after)]` field; one field holds the delay",
                        );
                    } else {
                        let member = match &field.ident {
                            Some(ident) => Member::Named(ident.clone()),
                            None => Member::Unnamed(index.into()),
                        };
                        field_delay = Some((member, span));
                    }
                } else {
                    errors.at(
                        span,
                        format!(
                            "unknown `flow` field attribute `{}`; the only one on a field is `retry_after` (the field holds the delay, a `Duration` or `Option<Duration>`)",
                            quote::ToTokens::to_token_stream(&meta.path)
                        ),
                    );
                }
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
            if let Err(error) = result {
                errors.push(error);
            }
        }
    }

    let marked = class.map(|(c, _)| c).unwrap_or(Class::Permanent);
    let retry_spans = retry_after
        .iter()
        .map(|(_, s)| *s)
        .chain(field_delay.iter().map(|(_, s)| *s));
    if marked != Class::Transient {
        for span in retry_spans {
            errors.at(
                span,
                format!(
                    "`retry_after` only applies to a transient error, but `{ident}` is {}; mark it `#[flow(transient, ...)]` or remove `retry_after`",
                    match marked {
                        Class::Transparent => "`transparent` (its field's own `Classify` decides)",
                        _ => "permanent (a permanent error is never retried)",
                    }
                ),
            );
        }
    } else if let (Some(_), Some((_, span))) = (&retry_after, &field_delay) {
        errors.at(
            *span,
            format!("`{ident}` has both `retry_after = \"...\"` and a `#[flow(retry_after)]` field; keep one"),
        );
    }

    let mut delegate = None;
    if let Some((Class::Transparent, span)) = class {
        if fields.len() == 1 {
            let field = fields
                .iter()
                .next()
                .map(|f| (f.ident.clone(), f.ty.clone()));
            if let Some((name, ty)) = field {
                let member = match name {
                    Some(ident) => Member::Named(ident),
                    None => Member::Unnamed(0.into()),
                };
                delegate = Some((member, ty));
            }
        } else {
            errors.at(
                span,
                format!(
                    "`transparent` delegates to the single field's own `Classify`, but `{ident}` has {} fields; give it exactly one field, or mark it `transient` or `permanent`",
                    fields.len()
                ),
            );
        }
    }

    let retry_after = match (retry_after, field_delay) {
        (Some((ms, _)), _) => RetryAfter::Const(ms),
        (None, Some((member, _))) => RetryAfter::Field(member),
        (None, None) => RetryAfter::None,
    };
    Variant {
        path,
        class: marked,
        delegate,
        retry_after,
    }
}
