//! Reads an item's doc comment, which the registry keeps for the CLI and the runbook.

use syn::{Attribute, Expr, Lit, Meta};

/// The `///` lines of `attrs`, joined, with the one leading space rustdoc adds removed; the
/// empty lines between paragraphs are kept.
pub(crate) fn doc_string(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(nv) = &attr.meta {
            if !nv.path.is_ident("doc") {
                continue;
            }
            if let Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                // `split`, not `lines`: an empty `///` line is `#[doc = ""]`, which `lines()`
                // drops, and with it the break between two paragraphs.
                let value = s.value();
                for line in value.split('\n') {
                    lines.push(line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned());
                }
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::doc_string;
    use syn::parse::Parser;

    #[test]
    fn keeps_every_paragraph() {
        let attrs = syn::Attribute::parse_outer
            .parse2(quote::quote! {
                /// Charges one invoice.
                ///
                /// Declined cards are
                /// never retried.
                #[doc = ""]
                /// Last.
            })
            .unwrap_or_default();
        assert_eq!(
            doc_string(&attrs),
            "Charges one invoice.\n\nDeclined cards are\nnever retried.\n\nLast."
        );
    }
}
