//! Turning a SCSI [`Completion`] into PDUs (RFC 7143 §11.4, §11.7): Data-In split by the
//! initiator's MaxRecvDataSegmentLength, F at MaxBurstLength boundaries, status folded into
//! the last Data-In when there is no sense (§11.7.3), residuals per §11.4.5.

use bytes::Bytes;
use pdu::msg::{DataIn, Residual, ScsiResponse, TargetSeq};
use pdu::OutPdu;

use super::writer::StatSn;
use crate::scsi::Completion;

/// The residual of a transfer that wanted `actual` bytes against an EDTL of `expected`.
pub fn residual(expected: u32, actual: u64) -> Residual {
    if actual > expected as u64 {
        Residual::Overflow((actual - expected as u64).min(u32::MAX as u64) as u32)
    } else if actual < expected as u64 {
        Residual::Underflow(expected - actual as u32)
    } else {
        Residual::None
    }
}

pub struct ResponseShape {
    pub lun: u64,
    pub itt: u32,
    /// R bit and EDTL for reads; W bit and EDTL for writes.
    pub read: bool,
    pub write: bool,
    pub edtl: u32,
    /// Bytes the CDB asked the initiator to send (writes).
    pub data_out_len: u32,
    pub r2t_count: u32,
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
}

/// All PDUs answering one command, in order.
pub fn build(shape: &ResponseShape, completion: Completion) -> Vec<(OutPdu, StatSn)> {
    let mut out = Vec::new();
    let data = completion.data_in.unwrap_or_default();
    let (residual, sent) = if shape.read {
        let sent = data.len().min(shape.edtl as usize);
        (residual(shape.edtl, data.len() as u64), data.slice(..sent))
    } else if shape.write {
        (residual(shape.edtl, shape.data_out_len as u64), Bytes::new())
    } else {
        // Neither R nor W: EDTL is 0, so anything the command would move is overflow.
        let wanted = data.len() as u64 + shape.data_out_len as u64;
        (residual(0, wanted), Bytes::new())
    };
    let status_in_data = completion.sense.is_none() && !sent.is_empty();
    let chunk = shape.max_recv_data_segment_length.max(512) as usize;
    let burst = shape.max_burst_length.max(512) as usize;
    let mut data_sn = 0u32;
    let mut offset = 0usize;
    while offset < sent.len() {
        // A Data-In sequence ends at MaxBurstLength (§13.13): the F bit marks its last PDU.
        let burst_end = ((offset / burst) + 1) * burst;
        let end = (offset + chunk).min(sent.len()).min(burst_end);
        let last = end == sent.len();
        let with_status = last && status_in_data;
        let pdu = DataIn {
            final_bit: last || end == burst_end,
            ack: false,
            status: with_status.then_some(completion.status),
            residual: if with_status { residual } else { Residual::None },
            lun: shape.lun,
            itt: shape.itt,
            ttt: pdu::RESERVED_TAG,
            seq: TargetSeq::default(),
            data_sn,
            buffer_offset: offset as u32,
            data: sent.slice(offset..end),
        };
        out.push((pdu.encode(), if with_status { StatSn::Advance } else { StatSn::Reserved }));
        data_sn += 1;
        offset = end;
    }
    if !status_in_data {
        let rsp = ScsiResponse {
            residual,
            bidi_residual: Residual::None,
            response: 0,
            status: completion.status,
            itt: shape.itt,
            seq: TargetSeq::default(),
            // §11.4.8: the number of Data-In (reads) or R2T (writes) PDUs sent for the task.
            exp_data_sn: if shape.read { data_sn } else { shape.r2t_count },
            data: completion.sense.map(|s| ScsiResponse::sense_segment(&s)).unwrap_or_default(),
        };
        out.push((rsp.encode(), StatSn::Advance));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::Completion;

    fn shape(read: bool, edtl: u32) -> ResponseShape {
        ResponseShape {
            lun: 0,
            itt: 9,
            read,
            write: !read,
            edtl,
            data_out_len: 512,
            r2t_count: 0,
            max_recv_data_segment_length: 8192,
            max_burst_length: 16384,
        }
    }

    #[test]
    fn read_split_with_status_in_last_data_in() {
        let pdus = build(&shape(true, 40000), Completion::good_with_data(Bytes::from(vec![1; 40000])));
        assert_eq!(pdus.len(), 5);
        let last = pdus.last().unwrap();
        assert_eq!(last.1, StatSn::Advance);
        let b = last.0.view();
        assert_eq!(b.flags() & 0x81, 0x81);
        // F at the 16 KiB burst boundary too.
        assert_eq!(pdus[1].0.view().flags() & 0x80, 0x80);
        assert_eq!(pdus[0].0.view().flags() & 0x80, 0);
    }

    #[test]
    fn read_residuals_follow_libiscsi_expectations() {
        // TL 1 block, EDTL 200: 200 bytes sent, overflow 312.
        let pdus = build(&shape(true, 200), Completion::good_with_data(Bytes::from(vec![0; 512])));
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].0.data.len(), 200);
        assert_eq!(pdus[0].0.view().flags() & 0x04, 0x04);
        assert_eq!(pdus[0].0.view().u32_at(44), 312);
        // EDTL 0: no data, SCSI Response with overflow 512.
        let pdus = build(&shape(true, 0), Completion::good_with_data(Bytes::from(vec![0; 512])));
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].0.view().opcode(), pdu::Opcode::SCSI_RESPONSE);
        assert_eq!(pdus[0].0.view().u32_at(44), 512);
        // Underflow: EDTL 10000, 512 produced.
        let pdus = build(&shape(true, 10000), Completion::good_with_data(Bytes::from(vec![0; 512])));
        assert_eq!(pdus[0].0.view().flags() & 0x02, 0x02);
        assert_eq!(pdus[0].0.view().u32_at(44), 9488);
    }

    #[test]
    fn write_overflow_in_response() {
        let mut s = shape(false, 200);
        s.data_out_len = 512;
        let pdus = build(&s, Completion::good());
        assert_eq!(pdus[0].0.view().flags() & 0x04, 0x04);
        assert_eq!(pdus[0].0.view().u32_at(44), 312);
    }
}
