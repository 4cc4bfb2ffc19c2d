//! GFLOP/s of the dense layers' product shapes on the `gemm` crate, four ways: `gemm`'s own
//! two-core split (`Parallelism::Rayon`), one core, and the output split by rows or by
//! columns into two single-core products (what `src/train/cpu/matmul.rs` does). Reports; gates
//! nothing. `cargo bench --bench products` (add `-- M K N [t|n] [t|n]` for one shape,
//! `t` meaning that operand is read transposed, as `Wᵀ` in `dy · Wᵀ`).

use std::time::Instant;

use gemm::Parallelism;

/// A product's operands, `a` (`m × k`) and `b` (`k × n`), either read transposed.
struct Shape {
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
}

/// An output pointer shared by the two halves, which write disjoint parts of it.
#[derive(Clone, Copy)]
struct Out(*mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let shapes = if args.len() >= 3 {
        let flag = |i: usize| args.get(i).is_some_and(|s| s == "t");
        vec![Shape {
            m: args[0].parse().unwrap(),
            k: args[1].parse().unwrap(),
            n: args[2].parse().unwrap(),
            a_t: flag(3),
            b_t: flag(4),
        }]
    } else {
        // (m, k, n, a transposed, b transposed): the MLP's and Highway's layers at batch 256
        // (x · W, dy · Wᵀ, xᵀ · dy), the ConvNet's dense layer at batch 128, the seed
        // perceptron's at batch 32.
        [
            (256, 3072, 512, false, false),
            (256, 512, 512, false, false),
            (256, 512, 512, false, true),
            (512, 256, 512, true, false),
            (3072, 256, 512, true, false),
            (128, 4096, 128, false, false),
            (128, 128, 4096, false, true),
            (4096, 128, 128, true, false),
            (32, 3072, 3072, false, false),
            (3072, 32, 3072, true, false),
        ]
        .into_iter()
        .map(|(m, k, n, a_t, b_t)| Shape { m, k, n, a_t, b_t })
        .collect()
    };
    println!("| m | k | n | a | b | gemm's split | one core | rows split | columns split |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in shapes {
        measure(&s);
    }
}

fn measure(s: &Shape) {
    let Shape { m, k, n, .. } = *s;
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    // (row stride, column stride) of each logical matrix.
    let (ars, acs) = if s.a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (brs, bcs) = if s.b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let out = Out(c.as_mut_ptr());
    let (a, b) = (a.as_ptr() as usize, b.as_ptr() as usize);
    // One product of rows `r0..r0 + rows` and columns `c0..c0 + cols` of the output.
    let part = move |r0: usize, rows: usize, c0: usize, cols: usize, par: Parallelism| unsafe {
        let out = out;
        gemm::gemm(
            rows,
            cols,
            k,
            out.0.add(r0 * n + c0),
            1,
            n as isize,
            false,
            (a as *const f32).offset(r0 as isize * ars),
            acs,
            ars,
            (b as *const f32).offset(c0 as isize * bcs),
            bcs,
            brs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    };
    let reps = (2e9 / (2.0 * (m * k * n) as f64)).clamp(5.0, 200.0) as usize;
    let gflops = |f: &dyn Fn()| {
        f();
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        2.0 * (m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    let rayon_split = gflops(&|| part(0, m, 0, n, Parallelism::Rayon(0)));
    let one = gflops(&|| part(0, m, 0, n, Parallelism::None));
    let rows = gflops(&|| {
        rayon::join(
            || part(0, m / 2, 0, n, Parallelism::None),
            || part(m / 2, m - m / 2, 0, n, Parallelism::None),
        );
    });
    let cols = gflops(&|| {
        rayon::join(
            || part(0, m, 0, n / 2, Parallelism::None),
            || part(0, m, n / 2, n - n / 2, Parallelism::None),
        );
    });
    let t = |x: bool| if x { "t" } else { "n" };
    println!(
        "| {m} | {k} | {n} | {} | {} | {rayon_split:.0} | {one:.0} | {rows:.0} | {cols:.0} |",
        t(s.a_t),
        t(s.b_t)
    );
}
