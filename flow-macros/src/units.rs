//! Whether a workflow runs units (`flow::units` / `flow::units_stream`), so that the runbook
//! offers the units and rollout actions only for workflows that can need them.
//!
//! Decided from the body's tokens: a call of a function named `units` or `units_stream`
//! (through any path, such as `flow::units(...)`), also inside closures, async blocks and the
//! arguments of macros such as `tokio::join!`. A workflow that reaches units only through a
//! helper function cannot be seen from its body; it says so with `#[workflow(units)]`.

use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Block, Expr, Token};

/// Whether `body` calls `units(...)` or `units_stream(...)`.
pub(crate) fn calls_units(body: &Block) -> bool {
    let mut finder = UnitsCall { found: false };
    finder.visit_block(body);
    finder.found
}

struct UnitsCall {
    found: bool,
}

impl<'ast> Visit<'ast> for UnitsCall {
    fn visit_expr_call(&mut self, node: &'ast syn::ExprCall) {
        if let Expr::Path(path) = &*node.func {
            if let Some(last) = path.path.segments.last() {
                if last.ident == "units" || last.ident == "units_stream" {
                    self.found = true;
                }
            }
        }
        syn::visit::visit_expr_call(self, node);
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        // Macros whose arguments are expressions (`join!`, `vec!`, `format!`) are searched too.
        if let Ok(args) = node.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::calls_units;

    fn body(tokens: proc_macro2::TokenStream) -> syn::Block {
        syn::parse2(tokens).unwrap_or_else(|e| panic!("not a block: {e}"))
    }

    #[test]
    fn finds_units_calls_anywhere_in_the_body() {
        for found in [
            body(quote::quote!({
                flow::units(items, |i| i.id).run(push).await?;
            })),
            body(quote::quote!({
                let r = flow_runtime::units_stream(s, key);
            })),
            body(quote::quote!({
                let (a, b) = tokio::join!(units(x, k).run(f), other());
            })),
            body(quote::quote!({
                let f = async move { units(x, k).run(f).await };
            })),
        ] {
            assert!(calls_units(&found));
        }
        for none in [
            body(quote::quote!({
                push(&record).await?;
            })),
            body(quote::quote!({
                let units = 3;
                report.units.len();
            })),
        ] {
            assert!(!calls_units(&none));
        }
    }
}
