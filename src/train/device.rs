//! The one place the backend is chosen: CUDA (burn-cuda) when a GPU is usable, else the
//! `flex` CPU backend; `--device` / `PIPE_DEVICE` or the config's `device` override it.
//! Everything else is generic over the backend.

use std::sync::OnceLock;

use anyhow::bail;
#[cfg(not(feature = "ndarray"))]
use burn::backend::Flex;
use burn::backend::{Autodiff, Cuda};

use super::config::DeviceChoice;

#[cfg(not(feature = "ndarray"))]
pub type CpuBackend = Flex;
/// Only to measure burn's other CPU backend against `flex` (`--features ndarray`, see
/// docs/BENCHMARKS.md): `flex` is faster on every family and bit-reproducible, ndarray is not.
#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray;
pub type GpuBackend = Cuda;
pub type CpuTrain = Autodiff<CpuBackend>;
pub type GpuTrain = Autodiff<GpuBackend>;

/// Overrides every train and evaluate stage's `device`: `cpu`, `cuda` or `auto`.
pub const DEVICE_ENV: &str = "PIPE_DEVICE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Cuda,
}

impl Backend {
    /// Recorded in the stage key: CPU and GPU results differ.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu if cfg!(feature = "ndarray") => "ndarray-cpu",
            Backend::Cpu => "flex-cpu",
            Backend::Cuda => "cuda",
        }
    }
}

/// Whether CUDA works here: the driver library loads and a tiny op runs. burn-cuda panics
/// inside cudarc without a driver, so the probe is guarded; asked once per process.
pub fn cuda_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // SAFETY: only loads the driver library and checks for its symbols.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return false;
        }
        std::panic::catch_unwind(|| {
            let device = burn::backend::cuda::CudaDevice::default();
            let t = burn::tensor::Tensor::<GpuBackend, 1>::ones([4], &device);
            t.sum().into_scalar() == 4.0
        })
        .unwrap_or(false)
    })
}

pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Backend> {
    let choice = match std::env::var(DEVICE_ENV).ok().as_deref().map(str::trim) {
        Some("cpu") => DeviceChoice::Cpu,
        Some("cuda" | "gpu") => DeviceChoice::Cuda,
        Some("auto") | Some("") | None => choice,
        Some(other) => bail!("{DEVICE_ENV}={other}: expected cpu, cuda or auto"),
    };
    Ok(match choice {
        DeviceChoice::Cpu => Backend::Cpu,
        DeviceChoice::Auto if cuda_usable() => Backend::Cuda,
        DeviceChoice::Auto => Backend::Cpu,
        DeviceChoice::Cuda if cuda_usable() => Backend::Cuda,
        DeviceChoice::Cuda => {
            bail!("device Cuda was asked for, but no usable CUDA GPU and driver were found")
        }
    })
}

/// What `auto` resolves to here (probing CUDA unless `PIPE_DEVICE` rules it out): the fact
/// of this machine that the train and evaluate keys read, besides `PIPE_DEVICE` itself.
pub fn environment() -> String {
    match resolve(DeviceChoice::Auto) {
        Ok(b) => b.name().to_string(),
        Err(e) => format!("error: {e}"),
    }
}
