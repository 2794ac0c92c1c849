//! Compile-time behaviour of the macros: supported forms compile, every rejected input fails
//! with its own clear message (`.stderr` next to each case).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
