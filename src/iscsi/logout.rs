//! Logout (RFC 7143 §11.14-§11.15). At ErrorRecoveryLevel 0 a logout ends the session's only
//! connection; outstanding commands are allowed to finish first, so no acknowledged work is
//! cut off and the response follows their responses.

use std::time::Duration;

use pdu::msg::logout::{reason, response};
use pdu::msg::{LogoutRequest, LogoutResponse, TargetSeq};
use tracing::info;

use super::full_feature::{End, Flow, FullFeature};
use super::writer::StatSn;

/// How long a logout waits for running commands before they are aborted.
const DRAIN: Duration = Duration::from_secs(30);

impl FullFeature {
    pub(super) async fn on_logout(&mut self, req: LogoutRequest) -> Flow {
        let code = match req.reason {
            reason::CLOSE_SESSION => response::CLOSED,
            reason::CLOSE_CONNECTION if req.cid == self.cid => response::CLOSED,
            reason::CLOSE_CONNECTION => response::CID_NOT_FOUND,
            // §11.15.1: connection recovery needs ErrorRecoveryLevel 2.
            reason::REMOVE_CONNECTION_FOR_RECOVERY => response::RECOVERY_NOT_SUPPORTED,
            _ => {
                let header = req.encode().finished_bhs().0;
                self.send_reject(pdu::error::reject_reason::INVALID_PDU_FIELD, bytes::Bytes::copy_from_slice(&header))
                    .await;
                return Flow::Continue;
            }
        };
        if code == response::CLOSED {
            // Commands still waiting for Data-Out can never finish: nothing reads the connection
            // while we drain. They end here without a response (§11.14: the target terminates
            // the pending commands of a closing connection or session).
            self.data.forget_all();
            // What this batch already answered goes out before we wait.
            self.writer.end_batch();
            let drained = tokio::time::timeout(DRAIN, async { while self.tasks.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                // What is still running is ended without a response (§11.14).
                self.abort_all_tasks().wait().await;
            }
            // The session's only connection is closing: the I_T nexus ends (SAM-5 §6.3.4) before
            // the initiator is told, so its SPC-2 reservation is already released when another
            // initiator acts on the Logout Response.
            self.end_nexus();
        }
        let p = &self.session.params;
        let rsp = LogoutResponse {
            response: code,
            itt: req.itt,
            seq: TargetSeq::default(),
            time2wait: p.default_time2wait,
            time2retain: p.default_time2retain,
        };
        self.writer.send(rsp.encode(), StatSn::Advance).await;
        if code != response::CLOSED {
            return Flow::Continue;
        }
        info!(reason = req.reason, "logout");
        self.writer.close().await;
        Flow::Stop(End::LoggedOut)
    }
}
