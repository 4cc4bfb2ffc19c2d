//! The one place the backend is chosen: CUDA (burn-cuda) when a GPU is usable, else the
//! `flex` CPU backend; `--device` / `PIPE_DEVICE` or the config's `device` override it.
//! Everything else is generic over the backend.
//!
//! On CUDA, most of a short run is warm-up: every kernel is compiled (NVRTC) at its first
//! launch. So CubeCL is set up here, before its first use, to keep compiled kernels (and
//! autotune results, in a build with autotune) in the project's cache
//! (`cache/kernels/<GPU model>/`), shared by every later process and by the nodes of a
//! cluster; and burn's fusion layer is a choice, off by default, as docs/BENCHMARKS.md's
//! measurements decided ("burn-cuda's warm-up", 2026-12-04). Autotune is a build choice
//! (Cargo.toml).

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::bail;
use burn::backend::{Autodiff, Cuda};

use super::config::DeviceChoice;
pub use super::cpu::{CpuBackend, CpuTrain};

/// burn-cuda with its fusion layer (fused element-wise kernels, compiled per graph shape).
pub type GpuBackend = Cuda;
/// burn-cuda without fusion: one kernel per operation.
pub type GpuUnfusedBackend = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
pub type GpuTrain = Autodiff<GpuBackend>;
pub type GpuUnfusedTrain = Autodiff<GpuUnfusedBackend>;

/// Overrides every train and evaluate stage's `device`: `cpu`, `cuda` or `auto`.
pub const DEVICE_ENV: &str = "PIPE_DEVICE";

/// `0`/`off` trains on CUDA without burn's fusion layer, `1`/`on` with it; unset: the
/// default below.
pub const FUSION_ENV: &str = "PIPE_CUDA_FUSION";
/// A file to which CubeCL logs every kernel it compiles and every autotune decision.
pub const KERNEL_LOG_ENV: &str = "PIPE_KERNEL_LOG";

/// Whether CUDA stages use burn's fusion layer unless `PIPE_CUDA_FUSION` says otherwise.
/// Off: on an H200 (docs/BENCHMARKS.md, 2026-12-04) fusion compiled 1–25% fewer kernels
/// but its cold first epochs were longer on five families of seven (equal within 0.1 s on
/// the other two), and its steady epochs slower on ResNet-20 (+10%), Highway (3.4x) and the
/// LSTM (+6%), faster only on the linear model and the seed's perceptron (8–15%); its peak
/// memory was higher (ResNet-20: 2.5 against 2.1 GiB).
const DEFAULT_FUSION: bool = false;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    /// burn-cuda with fusion.
    Cuda,
    /// burn-cuda without fusion.
    CudaUnfused,
}

impl Backend {
    /// Recorded in the stage key: CPU and GPU results differ, fused kernels may round
    /// differently from unfused ones, and a build with `autotune` picks kernels by timing
    /// them. None is plain `cuda`, the name results of burn-cuda with fusion and autotune
    /// carried before both became choices: those are never served for these.
    pub fn name(self) -> &'static str {
        let autotune = cfg!(feature = "autotune");
        match self {
            Backend::Cpu if cfg!(feature = "ndarray") => "ndarray-cpu",
            Backend::Cpu => "flex-cpu",
            Backend::Cuda if autotune => "cuda-fused-autotune",
            Backend::Cuda => "cuda-fused",
            Backend::CudaUnfused if autotune => "cuda-unfused-autotune",
            Backend::CudaUnfused => "cuda-unfused",
        }
    }

    pub fn is_gpu(self) -> bool {
        self != Backend::Cpu
    }
}

/// The CUDA backend that `PIPE_CUDA_FUSION`'s value (if set) asks for.
pub fn cuda_backend(fusion: Option<&str>) -> anyhow::Result<Backend> {
    let fused = match fusion.map(str::trim) {
        None | Some("") => DEFAULT_FUSION,
        Some("1" | "on" | "true") => true,
        Some("0" | "off" | "false") => false,
        Some(other) => bail!("{FUSION_ENV}={other}: expected 0 or 1"),
    };
    Ok(if fused {
        Backend::Cuda
    } else {
        Backend::CudaUnfused
    })
}

fn cuda_backend_here() -> anyhow::Result<Backend> {
    cuda_backend(std::env::var(FUSION_ENV).ok().as_deref())
}

static CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The project's cache folder, where CubeCL keeps compiled kernels and autotune results
/// (`kernels/`); set by the command line before any stage runs. Without it CubeCL's own
/// defaults apply (no kernel cache, autotune results under `target/` or the user's cache
/// folder).
pub fn set_cache_dir(dir: PathBuf) {
    let _ = CACHE_DIR.set(dir);
}

/// CubeCL's settings, given once before its first use: a `cubecl.toml` or `burn.toml` the
/// user wrote, then CubeCL's environment variables (`CUBECL_AUTOTUNE_LEVEL`, …), then
/// pipe's defaults for what neither set.
fn configure_cubecl() {
    use cubecl::config::cache::CacheConfig;
    use cubecl::config::compilation::CompilationLogLevel;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut c = CubeClRuntimeConfig::from_current_dir().override_from_env();
    // PTX is compiled for one architecture and autotune results hold for one GPU model: a
    // cache shared by a cluster's nodes keeps one folder per GPU model.
    if let Some(dir) = CACHE_DIR.get() {
        let dir = dir.join("kernels").join(gpu_model());
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        if c.compilation.cache.is_none() {
            c.compilation.cache = Some(CacheConfig::File(dir.clone()));
        }
        if matches!(c.autotune.cache, CacheConfig::Target) {
            c.autotune.cache = CacheConfig::File(dir.clone());
        }
    }
    if let Some(file) = std::env::var_os(KERNEL_LOG_ENV).filter(|f| !f.is_empty()) {
        c.compilation.logger.file = Some(file.clone().into());
        c.compilation.logger.level = CompilationLogLevel::Basic;
        c.autotune.logger.file = Some(file.into());
    }
    // Only fails if CubeCL was already configured (a second probe cannot happen: the
    // caller runs once); CubeCL's own settings then stand.
    let _ = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(c));
}

/// `NVIDIA_H200-sm_90`: GPU 0's name and compute capability, as a folder name; `gpu` if the
/// driver cannot say.
fn gpu_model() -> String {
    use cudarc::driver::result::{device, init};
    use cudarc::driver::sys::CUdevice_attribute as A;
    let ask = || -> Option<String> {
        init().ok()?;
        let dev = device::get(0).ok()?;
        // SAFETY: `dev` comes from `device::get`.
        let cc = |a| unsafe { device::get_attribute(dev, a) }.ok();
        let major = cc(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = cc(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        Some(format!("{}-sm_{major}{minor}", device::get_name(dev).ok()?))
    };
    let name = std::panic::catch_unwind(ask).ok().flatten();
    name.unwrap_or_else(|| "gpu".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether CUDA works here: the driver library loads and a tiny op runs. burn-cuda panics
/// inside cudarc without a driver, so the probe is guarded; asked once per process. The op
/// runs unfused, the default, whose kernels the stages then reuse.
pub fn cuda_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // SAFETY: only loads the driver library and checks for its symbols.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return false;
        }
        configure_cubecl();
        std::panic::catch_unwind(|| {
            let device = burn::backend::cuda::CudaDevice::default();
            let t = burn::tensor::Tensor::<GpuUnfusedBackend, 1>::ones([4], &device);
            t.sum().into_scalar() == 4.0
        })
        .unwrap_or(false)
    })
}

/// How many CUDA devices this process sees (`CUDA_VISIBLE_DEVICES` applied), 0 without a
/// driver: the default of `--gpus`. Asks the driver only, compiles nothing.
pub fn gpu_count() -> usize {
    // SAFETY: only loads the driver library and checks for its symbols.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return 0;
    }
    let ask = || -> Option<usize> {
        cudarc::driver::result::init().ok()?;
        cudarc::driver::result::device::get_count()
            .ok()
            .map(|n| n.max(0) as usize)
    };
    std::panic::catch_unwind(ask).ok().flatten().unwrap_or(0)
}

/// The CUDA device with this index (as this process numbers them: under Slurm, within the
/// job's `CUDA_VISIBLE_DEVICES`).
pub fn cuda_device(index: usize) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(index)
}

/// The backend a stage is keyed and scheduled for. Asked-for CUDA (the config's `device`,
/// `--device`, `PIPE_DEVICE`) is CUDA without looking at this machine: a build driven from
/// a login node with no GPU keys the stage for CUDA and asks Slurm for a GPU. Only `auto`
/// probes this machine.
pub fn planned(choice: DeviceChoice) -> anyhow::Result<Backend> {
    let choice = match std::env::var(DEVICE_ENV).ok().as_deref().map(str::trim) {
        Some("cpu") => DeviceChoice::Cpu,
        Some("cuda" | "gpu") => DeviceChoice::Cuda,
        Some("auto") | Some("") | None => choice,
        Some(other) => bail!("{DEVICE_ENV}={other}: expected cpu, cuda or auto"),
    };
    Ok(match choice {
        DeviceChoice::Cpu => Backend::Cpu,
        DeviceChoice::Auto if cuda_usable() => cuda_backend_here()?,
        DeviceChoice::Auto => Backend::Cpu,
        DeviceChoice::Cuda => cuda_backend_here()?,
    })
}

/// The backend a stage runs on here: its [`planned`] one, which this machine must have
/// (on a cluster node, the check that the job really got a GPU).
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Backend> {
    let backend = planned(choice)?;
    if backend.is_gpu() && !cuda_usable() {
        bail!(
            "this stage is keyed for CUDA ({}), but no usable CUDA GPU and driver were found on \
             this machine ({}){}",
            backend.name(),
            crate::engine::cache::host_name(),
            match std::env::var("SLURM_JOB_ID") {
                Ok(id) => format!(
                    "; Slurm job {id} was given no working GPU: check the partition's nodes \
                     and `gpus`/`extra` in slurm.ron"
                ),
                Err(_) => "; `--device cpu` trains on the CPU instead (under another key)".into(),
            }
        )
    }
    Ok(backend)
}

/// What `auto` resolves to here (probing CUDA unless `PIPE_DEVICE` rules it out): the fact
/// of this machine that the train and evaluate keys read, besides `PIPE_DEVICE` itself.
pub fn environment() -> String {
    match planned(DeviceChoice::Auto) {
        Ok(b) => b.name().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fusion_setting_is_read_and_nonsense_refused() {
        let default = if DEFAULT_FUSION {
            Backend::Cuda
        } else {
            Backend::CudaUnfused
        };
        assert_eq!(cuda_backend(None).unwrap(), default);
        assert_eq!(cuda_backend(Some("")).unwrap(), default);
        assert_eq!(cuda_backend(Some(" 1 ")).unwrap(), Backend::Cuda);
        assert_eq!(cuda_backend(Some("on")).unwrap(), Backend::Cuda);
        assert_eq!(cuda_backend(Some("0")).unwrap(), Backend::CudaUnfused);
        assert_eq!(cuda_backend(Some("off")).unwrap(), Backend::CudaUnfused);
        let e = cuda_backend(Some("yes")).unwrap_err().to_string();
        assert!(e.contains("PIPE_CUDA_FUSION=yes"), "{e}");
    }

    #[test]
    fn each_backend_keys_apart_and_none_takes_the_old_cuda_results() {
        let names = [Backend::Cpu, Backend::Cuda, Backend::CudaUnfused].map(Backend::name);
        assert!(!names.contains(&"cuda"), "{names:?}");
        assert_ne!(names[0], names[1]);
        assert_ne!(names[1], names[2]);
        assert_ne!(names[0], names[2]);
    }
}
