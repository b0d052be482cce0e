//! Text requests in Full Feature Phase (RFC 7143 §11.10-§11.11): SendTargets (Appendix C),
//! with continuation both ways (C bit from the initiator, TTT-driven pieces from us).

use bytes::Bytes;
use pdu::error::reject_reason;
use pdu::msg::{TargetSeq, TextRequest, TextResponse};
use pdu::text::{self, TextAccumulator};
use pdu::{Pdu, RESERVED_TAG};

use super::full_feature::FullFeature;
use super::login::{send_targets_response, SessionType};
use super::writer::StatSn;

#[derive(Default)]
pub struct TextState {
    request: TextAccumulator,
    /// The rest of a response too long for one PDU, and the TTT that asks for it.
    pending: Option<(u32, Vec<Bytes>)>,
    /// TTT of our acknowledgement of a continued (C bit) request: the next piece carries it.
    request_ttt: Option<u32>,
}

impl FullFeature {
    pub(super) async fn on_text(&mut self, req: TextRequest, pdu: &Pdu) {
        // §11.10.4: the initiator copies the TTT of our acknowledgement into the next piece of
        // a request it continues with the C bit.
        let continues_request = req.ttt != RESERVED_TAG && self.text.request_ttt == Some(req.ttt);
        self.text.request_ttt = None;
        if req.ttt != RESERVED_TAG && !continues_request {
            // The initiator asks for the next piece of our response (§11.10.4).
            match self.text.pending.take() {
                Some((ttt, pieces)) if ttt == req.ttt => self.send_text_pieces(req.itt, req.lun, pieces).await,
                _ => self.send_reject(reject_reason::INVALID_PDU_FIELD, pdu.header_bytes()).await,
            }
            return;
        }
        self.text.pending = None;
        let keys = match self.text.request.push(&req.data, req.cont) {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                // §11.10.2: acknowledge a continued request with an empty response.
                let ttt = self.data.next_ttt();
                self.text.request_ttt = Some(ttt);
                let rsp = TextResponse {
                    final_bit: false,
                    cont: false,
                    lun: req.lun,
                    itt: req.itt,
                    ttt,
                    seq: TargetSeq::default(),
                    data: Bytes::new(),
                };
                self.writer.send(rsp.encode(), StatSn::Advance).await;
                return;
            }
            Err(_) => {
                self.send_reject(reject_reason::INVALID_PDU_FIELD, pdu.header_bytes()).await;
                return;
            }
        };
        let mut answer: Vec<(String, String)> = Vec::new();
        for (key, value) in &keys {
            if key == "SendTargets" {
                answer.extend(self.send_targets(value));
            } else {
                // §6.2: keys we do not renegotiate in Full Feature Phase.
                answer.push((key.clone(), "NotUnderstood".into()));
            }
        }
        let encoded = text::encode(&answer);
        let max = self.session.params.max_recv_data_segment_length_initiator as usize;
        let pieces = text::split_for_pdus(&encoded, max);
        self.send_text_pieces(req.itt, req.lun, pieces).await;
    }

    fn send_targets(&self, value: &str) -> Vec<(String, String)> {
        let view = self.registry.send_targets_view(&self.session.initiator_name);
        match (self.session.kind, &self.session.target) {
            (SessionType::Discovery, _) => send_targets_response(value, &view),
            // In a normal session only the session's own target is reported (Appendix C).
            (SessionType::Normal, Some(own)) => {
                let own_view: Vec<_> = view.into_iter().filter(|(n, _)| n == &own.name).collect();
                let value = if value == "All" || value.is_empty() { own.name.as_str() } else { value };
                send_targets_response(value, &own_view)
            }
            (SessionType::Normal, None) => Vec::new(),
        }
    }

    async fn send_text_pieces(&mut self, itt: u32, lun: u64, mut pieces: Vec<Bytes>) {
        let first = if pieces.is_empty() { Bytes::new() } else { pieces.remove(0) };
        let more = !pieces.is_empty();
        let ttt = if more { self.data.next_ttt() } else { RESERVED_TAG };
        let rsp = TextResponse { final_bit: !more, cont: more, lun, itt, ttt, seq: TargetSeq::default(), data: first };
        if more {
            self.text.pending = Some((ttt, pieces));
        }
        self.writer.send(rsp.encode(), StatSn::Advance).await;
    }
}
