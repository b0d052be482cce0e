//! Many I_T nexuses registering a persistent reservation key on one LUN, as the hosts and
//! paths of a large cluster do: each logs in with its own initiator name and ISID, takes its
//! unit attentions, sends REGISTER AND IGNORE EXISTING KEY and logs out (the registration
//! outlives the session, SPC-4 §5.13.5). Setup for the reservation scale benchmark and test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::error::BenchError;
use initiator::cdb;
use initiator::connection::{Connection, Request};
use initiator::login::LoginOptions;
use initiator::url::IscsiUrl;

/// SPC-4 §6.15.2 Table 209.
pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
/// SPC-4 §6.15.3: byte 20, bit 0.
pub const APTPL: u8 = 0x01;

/// One I_T nexus to register and the key it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub initiator: String,
    pub isid: [u8; 6],
    pub key: u64,
}

/// Runs `request` until it gets past the unit attentions every new nexus first sees.
pub async fn execute_past_unit_attentions(conn: &mut Connection, request: Request) -> Result<(u8, Bytes), BenchError> {
    for _ in 0..8 {
        let done = conn.execute(request.clone()).await?;
        let sense = done.sense.as_deref().and_then(initiator::sense::triple);
        match (done.status, sense) {
            (cdb::CHECK_CONDITION, Some((cdb::UNIT_ATTENTION, _, _))) => continue,
            (status, _) if status == cdb::GOOD => return Ok((status, done.data)),
            (status, _) => return Err(BenchError(initiator::sense::describe_status(status, done.sense.as_deref()))),
        }
    }
    Err(BenchError::new("unit attentions never ended"))
}

/// Logs in as `r`, registers its key on `url`'s LUN and logs out.
pub async fn register(url: &IscsiUrl, r: &Registration, aptpl: bool) -> Result<(), BenchError> {
    let mut opts = LoginOptions::new(&r.initiator, 0);
    opts.isid = r.isid;
    let mut conn = Connection::connect(url, &opts).await?;
    let param = cdb::pr_out_param(0, r.key, if aptpl { APTPL } else { 0 });
    let request = Request {
        cdb: cdb::pr_out(REGISTER_AND_IGNORE_EXISTING_KEY, 0, param.len() as u32),
        write_data: Bytes::from(param),
        read_len: 0,
        collect: false,
        tag: 1,
    };
    execute_past_unit_attentions(&mut conn, request)
        .await
        .map_err(|e| BenchError(format!("REGISTER of {} {:02x?}: {e}", r.initiator, r.isid)))?;
    Ok(conn.logout().await?)
}

/// Registers every one of `all`, `parallel` sessions at a time; the first failure is returned.
pub async fn register_all(
    url: &IscsiUrl,
    all: Vec<Registration>,
    aptpl: bool,
    parallel: usize,
) -> Result<(), BenchError> {
    let all = Arc::new(all);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers: tokio::task::JoinSet<Result<(), BenchError>> = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (url, all, next) = (url.clone(), all.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = all.get(i) else { return Ok(()) };
                register(&url, r, aptpl).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| BenchError(format!("registration worker: {e}")))??;
    }
    Ok(())
}
