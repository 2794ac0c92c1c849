//! Error collection shared by the macros: every rejected input is recorded, and all of them are
//! reported together, so one `cargo build` shows every mistake in an attribute at once.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use std::fmt::Display;

/// The errors found so far, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// An error at one span.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error over the tokens of `tokens` (first to last, where the compiler can join spans).
    pub(crate) fn over(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.combined {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The user's item unchanged plus the errors: the item keeps compiling, so a mistake in the
/// attribute gives its own message and not a cascade of "cannot find function" errors
/// (tokio-macros' `token_stream_with_error`).
pub(crate) fn item_with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote! { #item #error }
}
