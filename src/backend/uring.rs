//! An io_uring for a LUN's direct I/O (`direct_io = true`): a read or write is submitted from
//! the runtime thread that runs the command and completes in the kernel while that thread serves
//! others, with no blocking-pool thread per I/O (docs/architecture.md has the A/B).
//!
//! Submissions take a short lock (one producer of the submission queue at a time). Completions
//! come back through an eventfd the ring signals, registered with the runtime's reactor: the
//! reactor wakes a runtime thread, which reaps them and wakes each waiting future (no thread of
//! our own in between). Every in-flight operation owns its buffer, its file and its task's
//! keep-alive (handoff.rs) until the kernel has completed it, so a future dropped by an abort
//! frees nothing the kernel still uses and its task stays live until the write has ended; a
//! ring dropped with operations in flight waits for them first. Where the kernel refuses
//! io_uring (disabled by sysctl, a seccomp filter, an old kernel), outside a runtime, or with
//! `PALISADE_IO_URING=off`, `Uring::start` answers None and direct I/O uses the blocking pool.

use std::any::Any;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex, Weak};

use io_uring::{opcode, squeue, types, IoUring};
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Submission queue entries; also the bound on operations in flight (the completion queue is
/// twice as large, so it never overflows).
const ENTRIES: u32 = 256;

/// io_uring_enter(2) flag: wait for completions (include/uapi/linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1;

type Buffer = Box<dyn Any + Send>;

struct Pending {
    done: oneshot::Sender<(i32, Buffer)>,
    buffer: Buffer,
    _file: Arc<File>,
    _owner: Option<Arc<dyn Send + Sync>>,
    _permit: OwnedSemaphorePermit,
}

/// A ring and what its reaper shares with the submitters; cloned handles share one ring.
#[derive(Clone)]
pub(crate) struct Uring {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uring")
    }
}

struct Shared {
    ring: IoUring,
    /// Held while pushing to and submitting the submission queue (a single producer).
    submit: Mutex<()>,
    /// Held while consuming the completion queue (a single consumer).
    reap: Mutex<()>,
    pending: Mutex<(u64, HashMap<u64, Pending>)>,
    in_flight: Arc<Semaphore>,
}

impl Uring {
    /// A ring whose completions the current runtime reaps; None where io_uring cannot be used.
    pub(crate) fn start() -> Option<Uring> {
        if std::env::var("PALISADE_IO_URING").is_ok_and(|v| v == "off") {
            tracing::debug!("direct I/O uses the blocking pool (PALISADE_IO_URING=off)");
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        match Self::start_in(&runtime) {
            Ok(ring) => Some(ring),
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}); direct I/O uses the blocking pool");
                None
            }
        }
    }

    fn start_in(runtime: &tokio::runtime::Handle) -> io::Result<Uring> {
        let ring = IoUring::new(ENTRIES)?;
        // SAFETY: eventfd(2) returns a new descriptor we own, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel takes its own reference to the eventfd: ours may close before the ring.
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let shared = Arc::new(Shared {
            ring,
            submit: Mutex::new(()),
            reap: Mutex::new(()),
            pending: Mutex::new((0, HashMap::new())),
            in_flight: Arc::new(Semaphore::new(ENTRIES as usize)),
        });
        let signalled = {
            let _in_runtime = runtime.enter();
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same until it drops.
            unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?
        };
        runtime.spawn(reap(Arc::downgrade(&shared), signalled));
        Ok(Uring { shared })
    }

    /// Reads `len` bytes at `offset` into the buffer, returning it filled; `addr` is the address
    /// of the buffer's heap storage (at least `len` bytes), which must not move with the buffer.
    pub(crate) async fn read_exact<B: Send + 'static>(
        &self,
        file: &Arc<File>,
        buf: B,
        addr: usize,
        len: usize,
        offset: u64,
    ) -> io::Result<B> {
        let fd = types::Fd(file.as_raw_fd());
        let read =
            |at: usize, n: u32, at_offset: u64| opcode::Read::new(fd, at as *mut u8, n).offset(at_offset).build();
        self.transfer(file, buf, addr, len, offset, io::ErrorKind::UnexpectedEof, read).await
    }

    /// Writes `len` bytes from the buffer (its storage at `addr`, as for reads) at `offset`;
    /// with `dsync` the write is durable when it completes (RWF_DSYNC: data and the device
    /// cache flush, SBC-3 §5.40 FUA).
    pub(crate) async fn write_all<B: Send + 'static>(
        &self,
        file: &Arc<File>,
        buf: B,
        addr: usize,
        len: usize,
        offset: u64,
        dsync: bool,
    ) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        let flags = if dsync { libc::RWF_DSYNC } else { 0 };
        let write = |at: usize, n: u32, at_offset: u64| {
            opcode::Write::new(fd, at as *const u8, n).offset(at_offset).rw_flags(flags).build()
        };
        self.transfer(file, buf, addr, len, offset, io::ErrorKind::WriteZero, write).await.map(drop)
    }

    /// Submits `entry(address, length, file offset)` for what is left of the `len` bytes until
    /// all of them have moved (a short transfer continues where it stopped); a transfer of
    /// nothing is `zero`. `addr..addr + len` lies in `buf`'s heap storage, which `run` keeps
    /// alive and in place until the kernel has completed each operation.
    #[allow(clippy::too_many_arguments)]
    async fn transfer<B: Send + 'static>(
        &self,
        file: &Arc<File>,
        mut buf: B,
        addr: usize,
        len: usize,
        offset: u64,
        zero: io::ErrorKind,
        entry: impl Fn(usize, u32, u64) -> squeue::Entry,
    ) -> io::Result<B> {
        let mut done = 0usize;
        while done < len {
            let submitted = entry(addr + done, (len - done) as u32, offset + done as u64);
            let (n, back) = self.run(submitted, file, buf).await?;
            buf = back;
            match n {
                n if n > 0 => done += n as usize,
                0 => return Err(io::Error::from(zero)),
                n if -n == libc::EINTR || -n == libc::EAGAIN => {}
                n => return Err(io::Error::from_raw_os_error(-n)),
            }
        }
        Ok(buf)
    }

    /// Submits `entry` and waits for its completion: (the kernel's result, the buffer back).
    async fn run<B: Send + 'static>(&self, entry: squeue::Entry, file: &Arc<File>, buf: B) -> io::Result<(i32, B)> {
        let permit =
            self.shared.in_flight.clone().acquire_owned().await.map_err(|_| io::Error::other("io_uring closed"))?;
        let (done, completed) = oneshot::channel();
        let pending = Pending {
            done,
            buffer: Box::new(buf),
            _file: file.clone(),
            _owner: super::handoff::current_owner(),
            _permit: permit,
        };
        {
            let mut table = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            let key = table.0;
            table.0 += 1;
            table.1.insert(key, pending);
            let entry = entry.user_data(key);
            let _producer = self.shared.submit.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the submit lock makes this the only submission queue in use; the entry's
            // buffer and file are owned by its Pending until the completion is reaped.
            let pushed = unsafe {
                let mut queue = self.shared.ring.submission_shared();
                // Never full: at most ENTRIES operations are in flight (the permit) and each
                // push is submitted before the lock is released.
                let pushed = queue.push(&entry);
                queue.sync();
                pushed
            };
            if pushed.is_err() {
                table.1.remove(&key);
                return Err(io::Error::other("io_uring submission queue full"));
            }
            drop(table);
            loop {
                match self.shared.ring.submit() {
                    Ok(_) => break,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {
                        std::thread::yield_now()
                    }
                    // The entry stays queued and its Pending keeps what it uses; the next
                    // submission (or the drop's wait) takes it along.
                    Err(e) => {
                        tracing::error!("io_uring submit failed: {e}");
                        break;
                    }
                }
            }
        }
        let (result, buffer) = completed.await.map_err(|_| io::Error::other("io_uring completion lost"))?;
        let buf = *buffer.downcast::<B>().map_err(|_| io::Error::other("io_uring buffer mix-up"))?;
        Ok((result, buf))
    }
}

/// The reaper: runs on the runtime, woken by the ring's eventfd, until the ring is gone.
async fn reap(ring: Weak<Shared>, signalled: AsyncFd<OwnedFd>) {
    loop {
        let Ok(mut ready) = signalled.readable().await else { return };
        // Reset the counter before reaping: a completion posted after the reset signals again.
        let reset = ready.try_io(|fd| {
            let mut count = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from our eventfd.
            let n = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if matches!(reset, Ok(Err(ref e)) if e.kind() != io::ErrorKind::WouldBlock) {
            tracing::error!("io_uring eventfd: {reset:?}");
        }
        let Some(ring) = ring.upgrade() else { return };
        ring.deliver();
    }
}

impl Shared {
    /// Hands every posted completion to its future (or frees a dropped future's buffer).
    fn deliver(&self) -> usize {
        let _consumer = self.reap.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the reap lock makes this the only completion queue in use.
        let completions: Vec<(u64, i32)> =
            unsafe { self.ring.completion_shared() }.map(|c| (c.user_data(), c.result())).collect();
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let finished: Vec<(Pending, i32)> =
            completions.into_iter().filter_map(|(key, result)| table.1.remove(&key).map(|p| (p, result))).collect();
        drop(table);
        let count = finished.len();
        for (pending, result) in finished {
            let Pending { done, buffer, .. } = pending;
            // A dropped future (an aborted task) leaves the buffer to be freed here, after the
            // kernel is done with it.
            let _ = done.send((result, buffer));
        }
        count
    }
}

impl Drop for Shared {
    /// The kernel may still write into buffers of operations in flight: wait for them all.
    fn drop(&mut self) {
        let _ = self.ring.submit();
        while !self.pending.lock().unwrap_or_else(|e| e.into_inner()).1.is_empty() {
            // SAFETY: a plain wait for one completion on our ring; no argument.
            let waited = unsafe { self.ring.submitter().enter::<libc::sigset_t>(0, 1, IORING_ENTER_GETEVENTS, None) };
            if waited.is_err() && self.deliver() == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.deliver();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_direct_reads_and_writes_through_the_ring_see_their_own_data() {
        let Some(ring) = Uring::start() else {
            // The fallback is then what runs; direct.rs's tests cover it.
            assert_eq!(std::env::var("PALISADE_IO_URING").as_deref(), Ok("off"), "io_uring is permitted here");
            return;
        };
        // temp_dir may be tmpfs (no O_DIRECT); the repository's target folder is on a disk.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("palisade-uring-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(4 << 20).unwrap();
        let file = Arc::new(super::super::direct::open(&path, false).unwrap());
        let block = |i: usize| vec![(i * 37 % 251) as u8; 4096];
        let writes = (0..64).map(|i| {
            let (file, ring) = (file.clone(), ring.clone());
            tokio::spawn(async move {
                let aligned = aligned_copy(&block(i));
                let addr = aligned.as_ptr() as usize;
                ring.write_all(&file, aligned, addr, 4096, (i * 4096) as u64, i % 8 == 0).await.unwrap();
            })
        });
        for w in writes.collect::<Vec<_>>() {
            w.await.unwrap();
        }
        let reads = (0..64).map(|i| {
            let (file, ring) = (file.clone(), ring.clone());
            tokio::spawn(async move {
                let buf = aligned_copy(&[0u8; 4096]);
                let addr = buf.as_ptr() as usize;
                let buf = ring.read_exact(&file, buf, addr, 4096, (i * 4096) as u64).await.unwrap();
                assert_eq!(&buf[..], &block(i)[..], "block {i}");
            })
        });
        for r in reads.collect::<Vec<_>>() {
            r.await.unwrap();
        }
        // A read whose future is dropped at once: the kernel keeps its buffer until it ends.
        let buf = aligned_copy(&[0u8; 4096]);
        let addr = buf.as_ptr() as usize;
        drop(Box::pin(ring.read_exact(&file, buf, addr, 4096, 0)));
        let dropped = tokio::spawn({
            let (file, ring) = (file.clone(), ring.clone());
            async move {
                let buf = aligned_copy(&[0u8; 4096]);
                let addr = buf.as_ptr() as usize;
                ring.read_exact(&file, buf, addr, 4096, 8192).await
            }
        });
        dropped.abort();
        let _ = dropped.await;
        // Past the end of the file: an error, not a short read.
        let buf = aligned_copy(&[0u8; 4096]);
        let addr = buf.as_ptr() as usize;
        assert!(ring.read_exact(&file, buf, addr, 4096, 4 << 20).await.is_err());
        std::fs::remove_file(&path).unwrap();
    }

    /// A 4096-aligned heap copy (O_DIRECT wants aligned buffers).
    fn aligned_copy(data: &[u8]) -> Box<Aligned> {
        let mut b = Box::new(Aligned([0; 4096]));
        b.0[..data.len()].copy_from_slice(data);
        b
    }

    #[repr(align(4096))]
    struct Aligned([u8; 4096]);

    impl std::ops::Deref for Aligned {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0
        }
    }
}
