//! Prints tokens as a person writes them (`format!("inv-{}", id)`, not the
//! `format! ("inv-{}", id)` of `TokenStream::to_string`), for the text that the registry keeps
//! and the runbook shows: idempotency key expressions and type names.
//!
//! It works on the tokens, not on the source text: the source text of a whole expression is not
//! available to a macro on a stable compiler, and a macro's output must depend on its tokens
//! only. It is a display aid, so it need not reproduce every layout; it must only never join two
//! tokens into one that reads differently.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Keywords after which an opening parenthesis is not a call: `if (a)`, `match (a, b)`.
const KEYWORDS: &[&str] = &[
    "as", "break", "else", "for", "if", "in", "let", "loop", "match", "move", "mut", "ref",
    "return", "while", "where", "dyn", "impl", "unsafe", "async",
];

/// An expression's tokens as one line of Rust.
pub(crate) fn tidy(tokens: &TokenStream) -> String {
    let mut out = String::new();
    print(tokens.clone(), false, &mut out);
    out
}

/// A type's tokens as one line of Rust: every `<` opens generics (`Vec<Receipt>`).
pub(crate) fn tidy_type(tokens: &TokenStream) -> String {
    let mut out = String::new();
    print(tokens.clone(), true, &mut out);
    out
}

/// One printed token: what it is, for deciding the space before the next one.
#[derive(Clone, PartialEq)]
enum Atom {
    Word(String),
    Literal,
    Op(String),
    Group(Delimiter),
}

fn print(tokens: TokenStream, is_type: bool, out: &mut String) {
    let mut atoms: Vec<Atom> = Vec::new();
    // Depth of `<...>` opened by a turbofish (`parse::<u64>()`) or a path's generics.
    let mut angle = 0usize;
    let mut just_closed = false;
    // Inside a closure's parameter bars, and the index of the opening bar.
    let mut closure = false;
    let mut closure_at = 0usize;
    let mut iter = tokens.into_iter().peekable();
    while let Some(tree) = iter.next() {
        let (atom, text) = match tree {
            TokenTree::Ident(ident) => {
                let text = ident.to_string();
                (Atom::Word(text.clone()), text)
            }
            TokenTree::Literal(lit) => (Atom::Literal, lit.to_string()),
            TokenTree::Punct(punct) => {
                // Joint punctuation forms one operator: `::`, `..`, `=>`, `&&`.
                let mut op = punct.as_char().to_string();
                let mut spacing = punct.spacing();
                while spacing == proc_macro2::Spacing::Joint {
                    // `Vec<Vec<u8>>` closes two generics, not a shift.
                    if (is_type || angle > 0) && op.ends_with(['<', '>']) {
                        break;
                    }
                    match iter.peek() {
                        Some(TokenTree::Punct(next)) => {
                            op.push(next.as_char());
                            spacing = next.spacing();
                            iter.next();
                        }
                        _ => break,
                    }
                }
                (Atom::Op(op.clone()), op)
            }
            TokenTree::Group(group) => {
                let mut inner = String::new();
                print(group.stream(), is_type, &mut inner);
                let text = match group.delimiter() {
                    Delimiter::Parenthesis => format!("({inner})"),
                    Delimiter::Bracket => format!("[{inner}]"),
                    Delimiter::Brace if inner.is_empty() => "{}".to_owned(),
                    Delimiter::Brace => format!("{{ {inner} }}"),
                    Delimiter::None => inner,
                };
                (Atom::Group(group.delimiter()), text)
            }
        };
        let opens_generics = atom == Atom::Op("<".into())
            && (is_type || angle > 0 || matches!(atoms.last(), Some(Atom::Op(op)) if op == "::"));
        let closes_generics = angle > 0 && atom == Atom::Op(">".into());
        let in_generics = angle > 0 || opens_generics || just_closed;
        // A closure's `|params|`: tight inside its bars.
        let bar = atom == Atom::Op("|".into());
        let opens_closure = bar && !closure && unary_position(&atoms);
        let closes_closure = bar && closure;
        let space = if closes_closure
            || matches!(atoms.last(), Some(Atom::Op(o)) if o == "|" && closure && atoms.len() == closure_at + 1)
        {
            false
        } else {
            space_between(&atoms, &atom, in_generics)
        };
        if !out.is_empty() && space {
            out.push(' ');
        }
        if opens_closure {
            closure = true;
            closure_at = atoms.len();
        } else if closes_closure {
            closure = false;
        }
        out.push_str(&text);
        just_closed = closes_generics;
        if opens_generics {
            angle += 1;
        } else if closes_generics {
            angle -= 1;
        }
        atoms.push(atom);
    }
}

fn space_between(before: &[Atom], next: &Atom, in_generics: bool) -> bool {
    let Some(prev) = before.last() else {
        return false;
    };
    let op = |atom: &Atom, ops: &[&str]| matches!(atom, Atom::Op(o) if ops.contains(&o.as_str()));
    // Tight on both sides.
    if op(next, &[".", "::", "..", "..="]) || op(prev, &[".", "::", "..", "..="]) {
        return false;
    }
    if in_generics && (op(next, &["<", ">"]) || op(prev, &["<"])) {
        return false;
    }
    // A lifetime's quote sticks to its name.
    if op(prev, &["'"]) {
        return false;
    }
    // Nothing before these.
    if op(next, &[",", ";", "?"]) {
        return false;
    }
    if op(next, &[":"]) {
        return false;
    }
    // A macro's `!` and a call's or index's group follow their name directly.
    if op(next, &["!"]) && matches!(prev, Atom::Word(_)) {
        return false;
    }
    if let Atom::Group(Delimiter::Parenthesis | Delimiter::Bracket) = next {
        match prev {
            Atom::Word(word) => return KEYWORDS.contains(&word.as_str()),
            Atom::Group(_) => return false,
            Atom::Op(o) if o == "!" => {
                // `name!(...)`, not `!(...)` after an operator.
                return !matches!(before.iter().rev().nth(1), Some(Atom::Word(_)));
            }
            Atom::Op(o) if o == ">" && in_generics => return false,
            _ => {}
        }
    }
    // A prefix operator (`&x`, `!done`, `-1`, `*r`) sticks to its operand.
    if op(prev, &["&", "&&", "!", "-", "*"]) && unary_position(&before[..before.len() - 1]) {
        return false;
    }
    true
}

/// Whether an operator after `before` is a prefix one: it starts an operand.
fn unary_position(before: &[Atom]) -> bool {
    match before.last() {
        None | Some(Atom::Op(_)) => true,
        Some(Atom::Word(word)) => KEYWORDS.contains(&word.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{tidy, tidy_type};
    use quote::quote;

    #[test]
    fn prints_expressions_as_written() {
        let cases = [
            (quote!(format!("inv-{}", id)), r#"format!("inv-{}", id)"#),
            (quote!(record.id), "record.id"),
            (quote!(order.id.to_string()), "order.id.to_string()"),
            (
                quote!(format!("{}-{}", a.b, c[0])),
                r#"format!("{}-{}", a.b, c[0])"#,
            ),
            (quote!(key(&order, -1)), "key(&order, -1)"),
            (quote!(a + b * 2), "a + b * 2"),
            (quote!(id.parse::<u64>()?), "id.parse::<u64>()?"),
            (quote!(!done && ok), "!done && ok"),
            (quote!(if a { b } else { c }), "if a { b } else { c }"),
            (quote!(a < b && c > d), "a < b && c > d"),
            (quote!(|r: &Record| r.id), "|r: &Record| r.id"),
        ];
        for (tokens, expected) in cases {
            assert_eq!(tidy(&tokens), expected);
        }
    }

    #[test]
    fn prints_types_as_written() {
        let cases = [
            (quote!(Vec<Receipt>), "Vec<Receipt>"),
            (
                quote!(std::collections::HashMap<String, Vec<u64>>),
                "std::collections::HashMap<String, Vec<u64>>",
            ),
            (quote!(()), "()"),
            (quote!((u8, String)), "(u8, String)"),
            (quote!(&'static str), "&'static str"),
            (quote!([u8; 4]), "[u8; 4]"),
            (quote!(Option<&'a T>), "Option<&'a T>"),
        ];
        for (tokens, expected) in cases {
            assert_eq!(tidy_type(&tokens), expected);
        }
    }
}
