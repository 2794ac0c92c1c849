//! Checks that an `idempotency_key` expression is computed from the step's parameters alone.
//!
//! The key is recomputed on a resume, in another process; anything else it read (a static, a
//! local of the caller, the clock) could give another key and run the side effect twice.

use crate::errors::Errors;
use proc_macro2::Span;
use std::collections::HashSet;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, Ident, Pat, Token};

/// Reports each single-segment name in `expr` that is not a parameter, and returns the
/// parameters that the expression uses (the body need not use them too).
pub(crate) fn check(expr: &Expr, params: &[Ident], errors: &mut Errors) -> Vec<Ident> {
    let mut visitor = KeyNames {
        params: params.iter().map(|p| p.to_string()).collect(),
        used: HashSet::new(),
        local: Vec::new(),
        param_list: params
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", "),
        errors,
    };
    visitor.visit_expr(expr);
    let used = visitor.used;
    params
        .iter()
        .filter(|p| used.contains(&p.to_string()))
        .cloned()
        .collect()
}

struct KeyNames<'a> {
    params: HashSet<String>,
    /// The parameters the expression reads.
    used: HashSet<String>,
    /// Names bound inside the expression (closure parameters).
    local: Vec<String>,
    param_list: String,
    errors: &'a mut Errors,
}

impl KeyNames<'_> {
    fn check_name(&mut self, name: &str, span: Span) {
        let uppercase = name.starts_with(|c: char| c.is_uppercase());
        if self.local.iter().any(|l| l == name) {
            return;
        }
        if self.params.contains(name) {
            self.used.insert(name.to_owned());
            return;
        }
        if uppercase {
            return;
        }
        let params = if self.param_list.is_empty() {
            "the step has no parameters".to_owned()
        } else {
            format!("its parameters are {}", self.param_list)
        };
        self.errors.at(
            span,
            format!(
                "`idempotency_key` may only use the step's parameters, but `{name}` is not one of them ({params}); the key is recomputed on a resume, so it must come from the arguments alone"
            ),
        );
    }

    /// Names captured by a format string (`"{order_id}"`).
    fn check_format_string(&mut self, lit: &syn::LitStr) {
        let text = lit.value();
        let mut chars = text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '{' {
                continue;
            }
            if chars.peek().map(|(_, c)| *c) == Some('{') {
                chars.next();
                continue;
            }
            let mut name = String::new();
            while let Some((_, c)) = chars.peek().copied() {
                if c == '}' || c == ':' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            let is_ident = name.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if is_ident {
                self.check_name(&name, lit.span());
            }
        }
    }
}

impl<'ast> Visit<'ast> for KeyNames<'_> {
    fn visit_expr_path(&mut self, node: &'ast syn::ExprPath) {
        let path = &node.path;
        if node.qself.is_none() && path.leading_colon.is_none() && path.segments.len() == 1 {
            let ident = &path.segments[0].ident;
            self.check_name(&ident.to_string(), ident.span());
        }
    }

    fn visit_expr_call(&mut self, node: &'ast syn::ExprCall) {
        // The callee of `make_key(id)` is a function, not a value the key reads.
        if !matches!(&*node.func, Expr::Path(_)) {
            self.visit_expr(&node.func);
        }
        for arg in &node.args {
            self.visit_expr(arg);
        }
    }

    fn visit_expr_closure(&mut self, node: &'ast syn::ExprClosure) {
        let before = self.local.len();
        for input in &node.inputs {
            collect_bindings(input, &mut self.local);
        }
        self.visit_expr(&node.body);
        self.local.truncate(before);
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        // `format!("{}-{}", a, b)` and the like: check the arguments, and the names the format
        // string captures. Macros whose tokens are not expressions are left to the compiler.
        let Ok(args) = node.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) else {
            return;
        };
        // Named arguments (`format!("{n}", n = attempt)`) may be used by the format string.
        let before = self.local.len();
        for arg in &args {
            if let Expr::Assign(assign) = arg {
                if let Expr::Path(name) = &*assign.left {
                    if let Some(ident) = name.path.get_ident() {
                        self.local.push(ident.to_string());
                    }
                }
            }
        }
        for (i, arg) in args.iter().enumerate() {
            match arg {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(lit),
                    ..
                }) if i == 0 => self.check_format_string(lit),
                Expr::Assign(assign) => self.visit_expr(&assign.right),
                other => self.visit_expr(other),
            }
        }
        self.local.truncate(before);
    }
}

fn collect_bindings(pat: &Pat, into: &mut Vec<String>) {
    match pat {
        Pat::Ident(p) => into.push(p.ident.to_string()),
        Pat::Type(p) => collect_bindings(&p.pat, into),
        Pat::Reference(p) => collect_bindings(&p.pat, into),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| collect_bindings(e, into)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| collect_bindings(e, into)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect_bindings(&f.pat, into)),
        _ => {}
    }
}
