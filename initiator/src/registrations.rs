//! Many I_T nexuses registering a persistent reservation key on one LUN, as the hosts and
//! paths of a large cluster do: each logs in with its own initiator name and ISID, takes its
//! unit attentions, sends REGISTER AND IGNORE EXISTING KEY and logs out (the registration
//! outlives the session, SPC-4 §5.13.5). Setup for the reservation scale benchmark and test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::cdb;
use crate::connection::{Connection, Request};
use crate::error::Error;
use crate::login::LoginOptions;
use crate::url::IscsiUrl;

/// SPC-4 §6.16.2 Table 213.
pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
/// SPC-4 §6.16.3: byte 20, bit 0.
pub const APTPL: u8 = 0x01;

/// One I_T nexus to register and the key it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub initiator: String,
    pub isid: [u8; 6],
    pub key: u64,
}

/// Logs in as `r`, registers its key on `url`'s LUN and logs out.
pub async fn register(url: &IscsiUrl, r: &Registration, aptpl: bool) -> Result<(), Error> {
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
    conn.execute_past_unit_attentions(request)
        .await
        .map_err(|e| Error::Other(format!("REGISTER of {} {:02x?}: {e}", r.initiator, r.isid)))?;
    conn.logout().await
}

/// Registers every one of `all`, `parallel` sessions at a time; the first failure is returned.
pub async fn register_all(url: &IscsiUrl, all: Vec<Registration>, aptpl: bool, parallel: usize) -> Result<(), Error> {
    let all = Arc::new(all);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers: tokio::task::JoinSet<Result<(), Error>> = tokio::task::JoinSet::new();
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
        done.map_err(|e| Error::Other(format!("registration worker: {e}")))??;
    }
    Ok(())
}
