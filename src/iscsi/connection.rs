//! One TCP connection from accept to close: login phase, then Full Feature Phase, then the
//! cleanup that I_T nexus loss requires (SAM-5 §6.3.4).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, info_span, warn, Instrument};

use super::full_feature::FullFeature;
use super::limits;
use super::login_phase::{self, LoginEnd};
use super::registry::{PortalAddr, Registry};
use super::writer;

pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    registry: Arc<Registry>,
    portal: PortalAddr,
    shutdown: watch::Receiver<bool>,
) {
    let resources = &registry.settings.resources;
    let Some(_address_slot) = registry.connections.admit(peer.ip(), resources.max_connections_per_address) else {
        // Closed at accept: no task or buffer is spent on a host over its limit.
        warn!(%peer, limit = resources.max_connections_per_address, "too many connections from this address, closing");
        return;
    };
    // Small PDUs (responses, R2Ts) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // A socket that never starts a login holds its slot only briefly.
    match tokio::time::timeout(resources.login_idle_timeout, read_first_header(&mut stream, &mut buf)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            info!(%peer, "no login request in time, closing");
            return;
        }
    }
    let login = tokio::time::timeout(
        registry.settings.login_timeout,
        login_phase::run(&mut stream, &mut buf, &registry, &portal, peer),
    )
    .await;
    let established = match login {
        Ok(Ok(e)) => e,
        Ok(Err(LoginEnd::Closed(why))) => {
            debug!(%peer, %why, "connection closed during login");
            return;
        }
        Ok(Err(LoginEnd::Refused)) => return,
        Err(_) => {
            info!(%peer, "login timed out");
            return;
        }
    };
    let session = established.session;
    let span = info_span!("session", id = %session.log_id());
    async {
        let (rd, wr) = stream.into_split();
        let p = &session.params;
        let digests = pdu::Digests { header: p.header_digest, data: p.data_digest };
        let r = &registry.settings.resources;
        let send_limits = writer::SendLimits { queue_bytes: r.max_send_queue_bytes, timeout: r.send_timeout };
        let (writer, writer_task) = writer::spawn(wr, digests, established.next_stat_sn, session.clone(), send_limits);
        session.set_writer(writer.clone());
        let ffp = FullFeature::new(session.clone(), registry.clone(), writer.clone(), established.cid);
        // A reload that removes the target asks its sessions to log out like a shutdown does.
        let shutdown = super::registry::shutdown_or_retired(shutdown, session.target.as_ref());
        let end = ffp.run(rd, buf, shutdown).await;
        writer.close().await;
        drop(writer);
        let _ = writer_task.await;
        // The reader handed the I_T nexus loss to the SCSI layer when it ended (SAM-5 §6.3.4).
        registry.sessions.remove_if_same(&session);
        session.mark_done();
        info!(
            ?end,
            live_tasks = limits::live_tasks(),
            held_data_bytes = limits::held_data_bytes(),
            "connection closed"
        );
    }
    .instrument(span)
    .await
}

/// Reads until a whole Basic Header Segment is in `buf`; false when the peer closed first.
async fn read_first_header(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    while buf.len() < pdu::BHS_LEN {
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}
