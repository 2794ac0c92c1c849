//! `#[step(...)]`: parse the options, validate them against the function, expand.

mod expand;
mod key;
mod parse;
mod validate;

pub(crate) use expand::respan_tokens;

use crate::errors::{item_with_error, Errors};
use proc_macro2::TokenStream;
use syn::ItemFn;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let error = syn::Error::new(error.span(), "`#[step]` only works on an `async fn`");
            return item_with_error(item, error);
        }
    };
    let mut errors = Errors::new();
    let args = parse::parse(args, &mut errors);
    let step = validate::validate(args, &function, &mut errors);
    match (step, errors.finish()) {
        (Some(step), Ok(())) => expand::expand(step, function),
        (_, Err(error)) => item_with_error(item, error),
        (None, Ok(())) => item,
    }
}
