//! A short run of the pipeline loader's fuzzer (examples/fuzz_loader.rs; the long run and
//! its figures are in docs/RELIABILITY.md): no input may panic the loader, and none may
//! take it longer than `PIPE_FUZZ_SECONDS` (10 s; lines pasted hundreds of times included).

#[path = "../examples/fuzz_loader.rs"]
mod fuzz_loader;

#[test]
fn the_loader_answers_every_mutant_without_panicking() {
    let cases = std::env::var("PIPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let (loaded, panic) = fuzz_loader::run(cases, 7);
    if let Some((name, input, message)) = panic {
        panic!("a mutant of {name} failed the loader: {message}\n--- input\n{input}");
    }
    // The mutants must not all be rejected at the first byte: some still load.
    assert!(
        loaded > cases / 100,
        "only {loaded} of {cases} mutants loaded"
    );
}
