//! Weight push from the learner to the samplers: NCCL broadcast between GPUs, and a plain
//! device-to-device copy when a learner and a sampler share one GPU.
//!
//! Set-up across processes: rank 0 (the learner) calls [`NcclId::new`] and sends
//! [`NcclId::to_bytes`] (128 bytes) to every sampler in an actor message; each rank then calls
//! [`WeightBroadcast::join`] with its rank and the world size (which blocks until all ranks
//! have joined). Each rank needs its own GPU: two ranks cannot share one, so on a single GPU
//! the only world is size 1 and [`copy_weights`] is the path to use.
#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};
use cudarc::nccl::{Comm, Id, NcclType};

use super::launch::{Library, require};
use crate::KernelError;

/// The NCCL unique id that lets ranks find each other; made once by rank 0.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NcclId([u8; 128]);

impl std::fmt::Debug for NcclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclId({:02x?}..)", &self.0[..8])
    }
}

impl NcclId {
    /// A fresh id (rank 0 only). Fails when libnccl cannot be loaded.
    pub fn new() -> Result<Self, KernelError> {
        require(Library::Nccl)?;
        let id = Id::new()?;
        Ok(Self(id.internal().map(|c| c as u8)))
    }

    /// The 128 bytes to send to the other ranks.
    pub fn to_bytes(&self) -> [u8; 128] {
        self.0
    }

    /// The id rank 0 made, from the bytes it sent.
    pub fn from_bytes(bytes: [u8; 128]) -> Self {
        Self(bytes)
    }
}

/// One rank's NCCL communicator for broadcasting weights.
#[derive(Debug)]
pub struct WeightBroadcast {
    comm: Comm,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent; `WeightBroadcast` is not `Sync` and every call takes `&self` of a value owned by
// one actor at a time, so moving it between threads (e.g. by an async runtime) is sound.
unsafe impl Send for WeightBroadcast {}

impl WeightBroadcast {
    /// Joins the communicator of `world_size` ranks as `rank`, on `stream`'s GPU. Blocks until
    /// every rank has joined.
    pub fn join(
        stream: Arc<CudaStream>,
        rank: usize,
        world_size: usize,
        id: NcclId,
    ) -> Result<Self, KernelError> {
        require(Library::Nccl)?;
        if rank >= world_size {
            return Err(KernelError::Shape(format!(
                "rank {rank} outside world of {world_size}"
            )));
        }
        // NCCL takes the device from the calling thread's current context.
        stream.context().bind_to_thread()?;
        let id = Id::uninit(id.0.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(stream, rank, world_size, id)?;
        Ok(Self { comm })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// The stream the collectives run on.
    pub fn stream(&self) -> Arc<CudaStream> {
        self.comm.stream()
    }

    /// In-place broadcast: after it completes every rank's `buf` holds `root`'s. Enqueued on
    /// [`WeightBroadcast::stream`]; all ranks must call it with buffers of one length.
    pub fn broadcast<T: NcclType>(
        &self,
        buf: &mut CudaSlice<T>,
        root: usize,
    ) -> Result<(), KernelError> {
        let root = self.root(root)?;
        self.comm.broadcast_in_place(buf, root)?;
        Ok(())
    }

    /// Out-of-place broadcast: `root` sends `src` (required there, ignored elsewhere) and
    /// every rank receives into `dst`.
    pub fn broadcast_into<T: NcclType>(
        &self,
        src: Option<&CudaSlice<T>>,
        dst: &mut CudaSlice<T>,
        root: usize,
    ) -> Result<(), KernelError> {
        let root_i = self.root(root)?;
        match src {
            Some(s) if s.len() != dst.len() => {
                return Err(KernelError::Shape("broadcast src and dst differ".into()));
            }
            None if self.rank() == root => {
                return Err(KernelError::Shape("the root must pass src".into()));
            }
            _ => {}
        }
        self.comm.broadcast(src, dst, root_i)?;
        Ok(())
    }

    fn root(&self, root: usize) -> Result<i32, KernelError> {
        if root >= self.world_size() {
            return Err(KernelError::Shape(format!("root {root} outside world")));
        }
        Ok(root as i32)
    }
}

/// The same-GPU weight push: enqueue a device-to-device copy of `src` into `dst` on `stream`.
pub fn copy_weights<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    src: &CudaSlice<T>,
    dst: &mut CudaSlice<T>,
) -> Result<(), KernelError> {
    if src.len() != dst.len() {
        return Err(KernelError::Shape(format!(
            "copy_weights: src {} vs dst {} elements",
            src.len(),
            dst.len()
        )));
    }
    stream.memcpy_dtod(src, dst)?;
    Ok(())
}
