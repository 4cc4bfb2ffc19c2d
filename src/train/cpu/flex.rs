//! What the hand-written CPU kernels share: recognizing
//! the `flex` backend's types behind a generic `Backend`, and reading and making its tensors.
//!
//! Models stay generic over burn's `Backend`: the CPU types are recognized at run time
//! (`Any`), so no model, module or training loop carries an extra trait bound.

use std::any::Any;
use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

/// `T` is `U`, as the downcast before it established.
pub(super) fn cast<T: 'static, U: 'static>(t: T) -> U {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed.downcast::<U>().expect("the same type")
}

/// A tensor's `f32` values in row-major order, copied only if its layout needs it.
pub(super) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    let layout = t.layout();
    let n = layout.num_elements();
    if t.is_contiguous() {
        Cow::Borrowed(&t.storage::<f32>()[layout.start_offset()..][..n])
    } else {
        Cow::Owned(t.to_contiguous().storage::<f32>()[..n].to_vec())
    }
}

/// A new row-major tensor.
pub(super) fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
