//! Batches from the normalized dataset: `u8` pixels become scaled `f32` inputs here, with
//! the per-channel affine map the normalize stage recorded.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::dataset::{Meta, Split, IMAGE_BYTES};

pub struct Batcher {
    scale: [f32; 3],
    shift: [f32; 3],
}

impl Batcher {
    pub fn new(meta: &Meta) -> Batcher {
        Batcher {
            scale: meta.scale,
            shift: meta.shift,
        }
    }

    /// Images `idx` of `split` as `[n, 3, 32, 32]` inputs, and their labels.
    pub fn batch<B: Backend>(
        &self,
        split: &Split,
        idx: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
        let plane = IMAGE_BYTES / 3;
        let mut x = Vec::with_capacity(idx.len() * IMAGE_BYTES);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            let img = split.image(i);
            for c in 0..3 {
                let (a, b) = (self.scale[c], self.shift[c]);
                x.extend(
                    img[c * plane..(c + 1) * plane]
                        .iter()
                        .map(|&p| p as f32 * a + b),
                );
            }
            y.push(split.labels[i] as i64);
        }
        let n = idx.len();
        (
            Tensor::from_data(TensorData::new(x, [n, 3, 32, 32]), device),
            Tensor::from_data(TensorData::new(y, [n]), device),
        )
    }
}
