//! A cluster gateway's write fence on the task layer (docs/cluster.md "Self-fencing"): past the
//! deadline every command that changes the medium gets NOT READY with the ALUA state, and
//! nothing reaches the backend; reads and cache flushes still run.

use super::*;
use crate::scsi::WriteFence;
use std::time::Duration;
use tokio::time::Instant;

fn fenced_lun(fence: &Arc<WriteFence>) -> Arc<Lun> {
    let backend = Backend::Memory(MemoryBackend::new(BLOCKS * BS as u64));
    let mut lun = Lun::new(0, backend, BS, LunIdentity::new("disk", "0001", "SN-F"), false).unwrap();
    lun.set_write_fence(fence.clone());
    Arc::new(lun)
}

/// One command whose expected data-out length is exactly `data`'s (WRITE SAME insists).
async fn run_exact(t: &ScsiTarget, n: &Arc<ItNexus>, cdb: &[u8], data: &[u8]) -> Completion {
    match t.prepare(task(n, 0, cdb, data.len() as u32)) {
        Err(done) => done,
        Ok(prepared) => prepared.execute(DataOut::from(Bytes::copy_from_slice(data))).await,
    }
}

#[tokio::test(start_paused = true)]
async fn past_the_deadline_every_medium_change_is_refused_and_nothing_lands() {
    let fence = Arc::new(WriteFence::default());
    fence.open_until(Instant::now() + Duration::from_secs(1));
    let lun = fenced_lun(&fence);
    let t = target(vec![lun.clone()]);
    let n = fresh(&t, 0).await;
    let write10 = [0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    assert_eq!(run(&t, &n, 0, &write10, &[0xAA; 512]).await.status, 0, "open: the write lands");

    tokio::time::advance(Duration::from_secs(1)).await;
    let block = [0x55u8; 512];
    let unmap_list = {
        let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]);
        p
    };
    let compare_and_write = [[0xAAu8; 512], [0x55; 512]].concat();
    let refused: [(&str, Vec<u8>, Vec<u8>); 5] = [
        ("WRITE(10)", write10.to_vec(), block.to_vec()),
        ("WRITE(16)", vec![0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0], block.to_vec()),
        ("WRITE SAME(10)", vec![0x41, 0, 0, 0, 0, 8, 0, 0, 1, 0], block.to_vec()),
        ("COMPARE AND WRITE", vec![0x89, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0], compare_and_write),
        ("UNMAP", vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], unmap_list),
    ];
    for (name, cdb, data) in refused {
        let c = run_exact(&t, &n, &cdb, &data).await;
        assert_eq!(sense_code(&c), (0x02, 0x04, 0x0A), "{name}: NOT READY, ASYMMETRIC ACCESS STATE TRANSITION");
    }
    let read = run(&t, &n, 0, &[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], &[]).await;
    assert_eq!(read.status, 0, "reads are not fenced by the write path");
    assert_eq!(read.data_in.as_deref().map(|d| d.to_vec()), Some(vec![0xAA; 512]), "nothing after the deadline landed");
    assert_eq!(run(&t, &n, 0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.status, 0, "SYNCHRONIZE CACHE runs");

    fence.report_unavailable();
    let c = run(&t, &n, 0, &write10, &block).await;
    assert_eq!(sense_code(&c), (0x02, 0x04, 0x0C), "NOT READY, TARGET PORT IN UNAVAILABLE STATE");
    fence.open_until(Instant::now() + Duration::from_secs(1));
    assert_eq!(run(&t, &n, 0, &write10, &block).await.status, 0, "rejoined: writes land again");
}
