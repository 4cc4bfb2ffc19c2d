//! Element-wise loops compiled for AVX2 where the CPU has it.
//!
//! The binary is built for any x86-64, so the loops the compiler vectorizes get 4-lane SSE
//! code unless they sit in a function compiled for AVX2 and chosen at run time. In the
//! LSTM, running its pointwise steps through here (with the backward's loop made
//! vectorizable and σ's 2ᵏ free of a scalar conversion) took them from 23% of training
//! samples to 16% (`perf record`, docs/BENCHMARKS.md).
//!
//! No FMA: both copies round alike, so a run gives the same numbers with or without AVX2.

/// Defines a function whose body is compiled twice, for any x86-64 and for AVX2, and runs
/// the AVX2 copy where the CPU has it. Closures written in the body are compiled with it
/// (a closure gets the target features of the function it is written in), so a body may
/// hand its loops to rayon. Plain `name: Type` arguments only.
macro_rules! wide {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? $body

            #[allow(dead_code, clippy::too_many_arguments)]
            fn any($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { avx2($($arg),*) };
            }
            any($($arg),*)
        }
    };
}

pub(crate) use wide;
