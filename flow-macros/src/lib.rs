//! Macros of flow. Use them through `flow_runtime`. (stub)
use proc_macro::TokenStream;

/// Marks a step.
#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Marks a workflow.
#[proc_macro_attribute]
pub fn workflow(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Derives `Classify`.
#[proc_macro_derive(Classify, attributes(flow))]
pub fn derive_classify(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}
