//! PERSISTENT RESERVE IN (SPC-4 §6.15): the parameter data is built from the state seen under
//! the fencing gate, so it never shows half of a concurrent PR OUT.

use super::lun::Lun;
use super::pr_out::to_sense;
use super::sense::Sense;
use crate::pr;
use bytes::Bytes;

pub(crate) async fn execute(lun: &Lun, action: u8, allocation_length: usize) -> Result<Option<Bytes>, Sense> {
    let state = lun.pr().read().await;
    pr::prin::respond(&state, action, allocation_length).map(|d| Some(Bytes::from(d))).map_err(to_sense)
}
