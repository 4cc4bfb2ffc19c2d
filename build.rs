//! Links the `pipe` binary as a position-dependent executable on Linux. A position-
//! independent one of this size (burn, CUDA and all) makes the dynamic loader apply some
//! 40,000 relocations on every start, touching the pages they sit on: about a millisecond
//! of each run, which is a large share of a no-op build. The library and tests are as usual.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
