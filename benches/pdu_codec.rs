//! PDU framing/decoding and encoding (pdu crate) and CRC32C digests: the per-PDU costs every
//! command pays on the target's data path.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pdu::msg::scsi::attr;
use pdu::msg::{DataIn, InitiatorPdu, Residual, ScsiCommand, ScsiResponse, TargetPdu, TargetSeq};
use pdu::{Digests, Framer, WireWriter};

const SEQ: TargetSeq = TargetSeq { stat_sn: 7, exp_cmd_sn: 9, max_cmd_sn: 40 };

fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn command(itt: u32, data: Bytes) -> ScsiCommand {
    ScsiCommand {
        immediate: false,
        final_bit: true,
        read: data.is_empty(),
        write: !data.is_empty(),
        attr: attr::SIMPLE,
        lun: 0,
        itt,
        expected_data_transfer_length: 4096,
        cmd_sn: itt,
        exp_stat_sn: 1,
        cdb: read16(itt as u64 * 8, 8),
        extended_cdb: Bytes::new(),
        bidi_read_length: None,
        data,
    }
}

fn data_in(len: usize) -> DataIn {
    DataIn {
        final_bit: true,
        ack: false,
        status: Some(0),
        residual: Residual::None,
        lun: 0,
        itt: 1,
        ttt: 0xffff_ffff,
        seq: SEQ,
        data_sn: 0,
        buffer_offset: 0,
        data: Bytes::from(vec![0x5a; len]),
    }
}

/// A receive buffer holding `n` back-to-back PDUs, as a socket read would deliver them.
fn stream_of(pdu: &pdu::OutPdu, n: usize, digests: Digests) -> BytesMut {
    let one = pdu.to_bytes(digests);
    let mut buf = BytesMut::with_capacity(one.len() * n);
    for _ in 0..n {
        buf.extend_from_slice(&one);
    }
    buf
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let framer = Framer { digests: Digests::default(), max_data_segment: 262_144 };
    let read_cmds = stream_of(&command(1, Bytes::new()).encode(), 64, Digests::default());
    g.throughput(Throughput::Elements(64));
    g.bench_function("frame+decode 64 READ commands", |b| {
        b.iter_batched(
            || read_cmds.clone(),
            |mut buf| {
                while let Some(p) = framer.decode(&mut buf).unwrap() {
                    black_box(InitiatorPdu::decode(&p).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    let write_cmds = stream_of(&command(1, Bytes::from(vec![1u8; 4096])).encode(), 64, Digests::default());
    g.bench_function("frame+decode 64 WRITE commands with 4 KiB immediate data", |b| {
        b.iter_batched(
            || write_cmds.clone(),
            |mut buf| {
                while let Some(p) = framer.decode(&mut buf).unwrap() {
                    black_box(InitiatorPdu::decode(&p).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    let digests = Digests { header: true, data: true };
    let framer_digests = Framer { digests, max_data_segment: 262_144 };
    let write_cmds_crc = stream_of(&command(1, Bytes::from(vec![1u8; 4096])).encode(), 64, digests);
    g.bench_function("frame+decode 64 WRITE commands, 4 KiB, header+data digests", |b| {
        b.iter_batched(
            || write_cmds_crc.clone(),
            |mut buf| {
                while let Some(p) = framer_digests.decode(&mut buf).unwrap() {
                    assert!(p.data_digest_ok());
                    black_box(InitiatorPdu::decode(&p).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    let data_ins = stream_of(&data_in(262_144).encode(), 8, Digests::default());
    // Framing is zero-copy, so bytes per second would be meaningless: count PDUs.
    g.throughput(Throughput::Elements(8));
    g.bench_function("frame+decode 8 Data-In of 256 KiB (initiator side)", |b| {
        b.iter_batched(
            || data_ins.clone(),
            |mut buf| {
                while let Some(p) = framer.decode(&mut buf).unwrap() {
                    black_box(TargetPdu::decode(&p).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let rsp = ScsiResponse {
        residual: Residual::None,
        bidi_residual: Residual::None,
        response: 0,
        status: 0,
        itt: 3,
        seq: SEQ,
        exp_data_sn: 1,
        data: Bytes::new(),
    };
    g.throughput(Throughput::Elements(64));
    g.bench_function("64 SCSI Responses into one WireWriter", |b| {
        let mut w = WireWriter::new();
        b.iter(|| {
            for _ in 0..64 {
                w.push(&rsp.encode(), Digests::default());
            }
            black_box(w.take_chunks());
        })
    });
    let d4k = data_in(4096);
    g.bench_function("64 Data-In of 4 KiB with status (gathered, not copied)", |b| {
        let mut w = WireWriter::new();
        b.iter(|| {
            for _ in 0..64 {
                w.push(&d4k.encode(), Digests::default());
            }
            black_box(w.take_chunks());
        })
    });
    g.bench_function("64 Data-In of 4 KiB, header+data digests", |b| {
        let mut w = WireWriter::new();
        let digests = Digests { header: true, data: true };
        b.iter(|| {
            for _ in 0..64 {
                w.push(&d4k.encode(), digests);
            }
            black_box(w.take_chunks());
        })
    });
    g.finish();
}

fn crc32c(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for len in [48usize, 4096, 262_144] {
        let data = vec![0xa5u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{len} bytes"), |b| b.iter(|| black_box(crc32c::crc32c(black_box(&data)))));
    }
    g.finish();
}

criterion_group!(benches, decode, encode, crc32c);
criterion_main!(benches);
