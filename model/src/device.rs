//! Device names as users write them (`cpu`, `cuda`, `cuda:N`) and the candle devices they
//! open.

use std::sync::Mutex;

use candle_core::Device;

use crate::{ModelError, Result};

/// A parsed device name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// Host memory and CPU kernels.
    Cpu,
    /// GPU `N` (a `--features cuda` build).
    Cuda(usize),
}

impl DeviceName {
    /// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    ModelError::Device(format!("device {name:?}: expected cpu, cuda or cuda:N"))
                }),
        }
    }

    /// Opens the device. A GPU needs a `--features cuda` build and a driver; without them
    /// the error says so.
    ///
    /// Each GPU is opened once per process and shared: candle treats two openings of one
    /// GPU as two devices, and tensors moving between them would pass through host memory.
    pub fn open(self) -> Result<Device> {
        static OPENED: Mutex<Vec<(usize, Device)>> = Mutex::new(Vec::new());
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, dev)) = opened.iter().find(|(i, _)| *i == n) {
                    return Ok(dev.clone());
                }
                let dev = Self::open_cuda(n)?;
                opened.push((n, dev.clone()));
                Ok(dev)
            }
        }
    }

    fn open_cuda(n: usize) -> Result<Device> {
        // candle's CUDA backend panics rather than failing when libcuda is absent.
        match std::panic::catch_unwind(|| Device::new_cuda(n)) {
            Ok(Ok(dev)) => Ok(dev),
            Ok(Err(e)) => Err(ModelError::Device(format!(
                "cuda:{n}: {e} (a `--features cuda` build on a machine with an NVIDIA driver is needed; see scripts/build-cuda.sh)"
            ))),
            Err(_) => Err(ModelError::Device(format!(
                "cuda:{n}: the CUDA driver library could not be loaded (is libcuda.so.1 on LD_LIBRARY_PATH? `. kernels/gpu-env.sh`)"
            ))),
        }
    }
}

/// Parses and opens `name`.
pub fn open(name: &str) -> Result<Device> {
    DeviceName::parse(name)?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_typos_are_errors() {
        assert_eq!(DeviceName::parse("cpu").unwrap(), DeviceName::Cpu);
        assert_eq!(DeviceName::parse("cuda").unwrap(), DeviceName::Cuda(0));
        assert_eq!(DeviceName::parse("cuda:3").unwrap(), DeviceName::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", "cuda3"] {
            let e = DeviceName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected cpu, cuda or cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_opens_and_a_gpu_without_cuda_is_a_clear_error() {
        assert!(open("cpu").unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            let e = open("cuda").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
