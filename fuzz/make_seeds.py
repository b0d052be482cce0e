#!/usr/bin/env python3
"""Builds the seed corpus of every fuzz target from fixtures/ (docs/fuzzing.md).

Usage: make_seeds.py OUT_DIR   -> OUT_DIR/<target>/<name> files (existing files are replaced).
Each target's seeds follow that target's input format (see the header of its source file).
"""
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PDUS = ROOT / "fixtures" / "pdus"
PARAMS = ROOT / "fixtures" / "params"
CONFIG = ROOT / "fixtures" / "config"

CHAP_TARGET = "iqn.2024-01.org.palisade:disk1"
OPEN_TARGET = "iqn.2024-01.org.palisade:open"


def pdu_files():
    return sorted(PDUS.glob("*/*.bin"))


def data_segment(raw):
    """Data segment of a captured PDU (all captures: no digests)."""
    ahs = raw[4] * 4
    dsl = int.from_bytes(raw[5:8], "big")
    return raw[48 + ahs:48 + ahs + dsl]


def params(name, target=None):
    lines = [l for l in (PARAMS / f"{name}.txt").read_text().splitlines() if l and not l.startswith("#")]
    if target:
        lines = [f"TargetName={target}" if l.startswith("TargetName=") else l for l in lines]
    return "\0".join(lines).encode() + b"\0"


def login_header(transit, csg, nsg, cont=False):
    return bytes([(0x80 if transit else 0) | (0x40 if cont else 0) | csg << 2 | nsg])


def login_flows():
    rec = lambda header, text: header + text + b"\xff"
    sec_op = login_header(True, 0, 1)
    op_ffp = login_header(True, 1, 3)
    yield "open-none", rec(sec_op, params("open_iscsi_secneg_none", OPEN_TARGET)) + rec(
        op_ffp, params("open_iscsi_opneg_normal"))
    yield "open-opfirst", rec(op_ffp, params("libiscsi_opneg_first", OPEN_TARGET))
    yield "discovery", rec(sec_op, params("open_iscsi_secneg_discovery")) + rec(
        op_ffp, params("open_iscsi_opneg_discovery"))
    yield "discovery-opfirst", rec(op_ffp, params("libiscsi_discovery_opneg_first"))
    chap_answer = b"CHAP_N=@N\0CHAP_R=@R\0"
    yield "chap", (rec(login_header(False, 0, 0), params("libiscsi_secneg_offer_chap"))
                   + rec(login_header(False, 0, 0), params("libiscsi_secneg_select_algorithm"))
                   + rec(sec_op, chap_answer) + rec(op_ffp, params("libiscsi_opneg_after_chap")))
    yield "chap-mutual", (rec(login_header(False, 0, 0), params("open_iscsi_secneg_mutual_chap"))
                          + rec(login_header(False, 0, 0), b"CHAP_A=5\0")
                          + rec(sec_op, chap_answer + b"CHAP_I=9\0CHAP_C=0x0102030405060708090a0b0c0d0e0f10\0")
                          + rec(op_ffp, params("open_iscsi_opneg_normal")))
    # The same first request split over two C-bit requests.
    text = params("open_iscsi_secneg_none", OPEN_TARGET)
    cut = text.index(b"\0", len(text) // 2) + 1
    yield "continued", (rec(login_header(False, 0, 1, cont=True), text[:cut]) + rec(sec_op, text[cut:])
                        + rec(op_ffp, params("open_iscsi_opneg_normal")))


def scsi_records():
    """One record per captured SCSI command: LUN 0, its CDB, its immediate data."""
    for f in pdu_files():
        raw = f.read_bytes()
        if raw[0] & 0x3F != 0x01:
            continue
        data = data_segment(raw)
        yield f"{f.parent.name}-{f.stem}", b"\x00" + raw[32:48] + struct.pack(">H", len(data)) + data


def odx_records():
    """POPULATE TOKEN of LUN 0 blocks 0-7, RECEIVE ROD TOKEN INFORMATION, WRITE USING TOKEN to
    blocks 16-23 (token field all zeros: the target XORs in the genuine token), the same with
    one bit flipped, and the block device zero token (SBC-3 §5.8, §5.45; SPC-4 §6.28)."""
    def rec(cdb, data=b""):
        return b"\x00" + cdb.ljust(16, b"\x00") + struct.pack(">H", len(data)) + data
    def ranges(lba, blocks):
        return struct.pack(">QI4x", lba, blocks)
    pt = bytearray(16) + ranges(0, 8)
    pt[0:2] = struct.pack(">H", len(pt) - 2)
    pt[14:16] = struct.pack(">H", 16)
    def wut(token, lba):
        p = bytearray(536) + ranges(lba, 8)
        p[0:2] = struct.pack(">H", len(p) - 2)
        p[16:528] = token
        p[534:536] = struct.pack(">H", 16)
        return bytes(p)
    def cdb(sa, list_id, length):
        return bytes([0x83, sa, 0, 0, 0, 0]) + struct.pack(">II", list_id, length)
    rrti = bytes([0x84, 0x07]) + struct.pack(">I", 1) + bytes(4) + struct.pack(">I", 1024)
    flipped = bytearray(512)
    flipped[300] = 0x10
    zero = bytearray(512)
    zero[0:4] = bytes([0xFF, 0xFF, 0, 1])
    zero[6:8] = struct.pack(">H", 0x1F8)
    genuine = wut(bytes(512), 16)
    yield "odx-populate-receive-write", (rec(cdb(0x10, 1, len(pt)), bytes(pt)) + rec(rrti)
                                          + rec(cdb(0x11, 2, len(genuine)), genuine)
                                          + rec(cdb(0x11, 3, len(genuine)), wut(bytes(flipped), 24)))
    zero_wut = wut(bytes(zero), 40)
    yield "odx-zero-token", rec(cdb(0x11, 4, len(zero_wut)), zero_wut)


def main():
    out = pathlib.Path(sys.argv[1])
    seeds = {t: {} for t in ("pdu_framing", "text_keys", "login_machine", "scsi_cdb", "config_toml")}
    for f in pdu_files():
        raw = f.read_bytes()
        seeds["pdu_framing"][f"{f.parent.name}-{f.stem}"] = raw
        if raw[0] & 0x3F in (0x03, 0x04, 0x23, 0x24):  # login and text requests/responses
            seeds["text_keys"][f"{f.parent.name}-{f.stem}"] = data_segment(raw)
    # Whole connections as streams: consecutive PDUs of each source's first 40.
    for source in sorted(PDUS.iterdir()):
        files = sorted(source.glob("*-i2t-*.bin"))[:40]
        if files:
            seeds["pdu_framing"][f"{source.name}-i2t-stream"] = b"".join(p.read_bytes() for p in files)
    for f in sorted(PARAMS.glob("*.txt")):
        seeds["text_keys"][f.stem] = params(f.stem)
    seeds["login_machine"] = dict(login_flows())
    records = dict(scsi_records())
    records.update(odx_records())
    seeds["scsi_cdb"] = records
    seeds["scsi_cdb"]["all-commands"] = b"".join(records.values())
    for f in sorted(CONFIG.rglob("*.toml")):
        seeds["config_toml"][f"{f.parent.name}-{f.stem}"] = f.read_bytes()
    for target, files in seeds.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (d / name).write_bytes(content)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main()
