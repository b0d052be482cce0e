//! I/O handed to a blocking thread or to the kernel (io_uring) outlives the future that started
//! it: an aborted task's future is dropped at once, but its pread/pwrite goes on in the kernel.
//! Whoever started the I/O names an owner with [`owned_by`]; the job keeps that owner alive until
//! it ends, so task management (which waits for aborted tasks to end) also waits for their writes to reach the
//! medium or fail (SAM-5 §7.2: an aborted task touches the medium no more once the abort is
//! answered; SPC-4 §5.13.11.2.5 for PREEMPT AND ABORT).

use std::future::Future;
use std::io;
use std::sync::Arc;

tokio::task_local! {
    static OWNER: Arc<dyn Send + Sync>;
}

/// Runs `future` with `owner` as the owner of the I/O it hands off.
pub async fn owned_by<F: Future>(owner: Arc<dyn Send + Sync>, future: F) -> F::Output {
    OWNER.scope(owner, future).await
}

/// The owner of I/O started here, for an io_uring operation to hold until it completes.
pub(crate) fn current_owner() -> Option<Arc<dyn Send + Sync>> {
    OWNER.try_with(Arc::clone).ok()
}

/// Runs `job` on the blocking pool, holding the current owner (if any) until it returns.
pub(crate) async fn blocking<T: Send + 'static>(job: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let owner = current_owner();
    let job = move || {
        let result = job();
        drop(owner);
        result
    };
    tokio::task::spawn_blocking(job).await.map_err(|join| io::Error::other(format!("I/O worker failed: {join}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_future_leaves_its_owner_alive_until_the_handed_off_job_ends() {
        let released = Arc::new(AtomicBool::new(false));
        let owner: Arc<dyn Send + Sync> = Arc::new(Flag(released.clone()));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let io = tokio::spawn(owned_by(owner, async move {
            blocking(move || {
                started_tx.send(()).unwrap();
                finish_rx.recv().unwrap();
                Ok(())
            })
            .await
        }));
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        io.abort();
        assert!(io.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!released.load(Ordering::SeqCst), "the job still runs: its owner must live");
        finish_tx.send(()).unwrap();
        for _ in 0..100 {
            if released.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the owner outlived the job");
    }
}
