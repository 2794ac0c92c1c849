//! Parsing of `key = value` attribute options shared by `#[workflow]` and `#[flow::main]`:
//! the loop, the duplicate check at the second key's span, and skipping a bad value so the
//! options after it are still checked.

use crate::errors::Errors;
use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, Token};

/// Calls `each(key, input, duplicate, errors)` for every option in `args`; `each` consumes the
/// option's value (if any). A key given twice is reported at its second span, and `duplicate`
/// tells `each` not to overwrite the first value.
pub(crate) fn parse_options(
    args: TokenStream,
    errors: &mut Errors,
    mut each: impl FnMut(&Ident, ParseStream, bool, &mut Errors) -> syn::Result<()>,
) {
    let mut parse = |input: ParseStream| -> syn::Result<()> {
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let key = input.call(Ident::parse_any)?;
            let name = key.to_string();
            let duplicate = seen.contains(&name);
            if duplicate {
                errors.at(
                    key.span(),
                    format!("duplicate `{name}` option; each option may be given once"),
                );
            }
            seen.push(name);
            each(&key, input, duplicate, errors)?;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    if let Err(error) = (&mut parse).parse2(args) {
        errors.push(error);
    }
}

/// Consumes the tokens up to the next `,` and returns them.
pub(crate) fn skip_value(input: ParseStream) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut skipped = TokenStream::new();
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            skipped.extend([tt]);
            rest = next;
        }
        Ok((skipped, rest))
    })
}
