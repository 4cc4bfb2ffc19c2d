//! Element-wise loops compiled for AVX2 where the CPU has it.
//!
//! The binary is built for any x86-64, so the loops the compiler vectorizes get 4-lane SSE
//! code unless they are inlined into a function compiled for AVX2 and chosen at run time.
//! In the LSTM, running its pointwise steps through here (with the backward's loop made
//! vectorizable and σ's 2ᵏ free of a scalar conversion) took them from 23% of training
//! samples to 14% (`perf record`, docs/BENCHMARKS.md).

/// A piece of element-wise work worth compiling twice: for any x86-64 and for AVX2.
///
/// A trait rather than a closure: a closure stays a function of its own, compiled for SSE,
/// while a method marked `#[inline(always)]` is inlined into [`vectorized`]'s AVX2 copy,
/// with what it calls that is `#[inline(always)]` too.
pub trait Wide {
    type Output;

    /// Mark it `#[inline(always)]`.
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for 8-lane registers where the CPU has AVX2. No FMA: both paths
/// round alike, so a run gives the same numbers with or without AVX2.
#[inline(always)]
pub fn vectorized<W: Wide>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(work) };
    }
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<W: Wide>(work: W) -> W::Output {
    work.run()
}
