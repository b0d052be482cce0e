#!/usr/bin/env python3
"""Split captured iSCSI TCP streams into one file per PDU.

usage: split_pdus.py OUTDIR TARGET_PORT STEP=CAPTURE.pcap [STEP=CAPTURE.pcap ...]

Every TCP stream of every capture is reassembled by tshark (`-z follow,tcp,raw,N`), both
directions in capture order, and cut at PDU boundaries computed from the BHS (RFC 7143 §11.2:
48-byte BHS, TotalAHSLength in 4-byte words, DataSegmentLength padded to 4 bytes, plus the
header/data digests once the login that negotiated them has finished). Each PDU is written whole
to OUTDIR/<nnn>-<i2t|t2i>-<opcode-name>.bin; OUTDIR/INDEX.tsv describes every PDU, including the
bulk Data-In/Data-Out/large PDUs that were left out to keep the fixtures small (file "-").
"""
import os
import subprocess
import sys

OPCODES = {
    0x00: "nop-out", 0x01: "scsi-cmd", 0x02: "tmf-req", 0x03: "login-req", 0x04: "text-req",
    0x05: "data-out", 0x06: "logout-req", 0x10: "snack-req",
    0x20: "nop-in", 0x21: "scsi-rsp", 0x22: "tmf-rsp", 0x23: "login-rsp", 0x24: "text-rsp",
    0x25: "data-in", 0x26: "logout-rsp", 0x31: "r2t", 0x32: "async-msg", 0x3F: "reject",
}
CDB_NAMES = {
    0x00: "TEST UNIT READY", 0x03: "REQUEST SENSE", 0x08: "READ(6)", 0x0A: "WRITE(6)", 0x12: "INQUIRY",
    0x1A: "MODE SENSE(6)", 0x25: "READ CAPACITY(10)", 0x28: "READ(10)", 0x2A: "WRITE(10)",
    0x2E: "WRITE AND VERIFY(10)", 0x2F: "VERIFY(10)", 0x35: "SYNCHRONIZE CACHE(10)", 0x5A: "MODE SENSE(10)",
    0x5E: "PERSISTENT RESERVE IN", 0x5F: "PERSISTENT RESERVE OUT", 0x88: "READ(16)", 0x8A: "WRITE(16)",
    0x9E: "SERVICE ACTION IN(16)", 0xA0: "REPORT LUNS", 0xA3: "MAINTENANCE IN", 0xA8: "READ(12)",
    0xAA: "WRITE(12)", 0x4D: "LOG SENSE", 0x1B: "START STOP UNIT", 0x1E: "PREVENT ALLOW MEDIUM REMOVAL",
}
BULK = {0x05, 0x25}          # Data-Out / Data-In: keep only a few samples
MAX_BULK_SAMPLES = 6         # per opcode per source
LARGE = 8192                 # any other PDU above this size: keep at most MAX_LARGE per opcode
MAX_LARGE = 3


def follow(pcap, stream):
    out = subprocess.run(["tshark", "-r", pcap, "-q", "-z", f"follow,tcp,raw,{stream}"],
                         check=True, capture_output=True, text=True).stdout
    nodes, chunks, in_body = {}, [], False
    for line in out.splitlines():
        if line.startswith("Node 0:") or line.startswith("Node 1:"):
            nodes[int(line[5])] = line.split(": ", 1)[1].strip()
            in_body = True
            continue
        if not in_body or line.startswith("====") or not line.strip():
            continue
        from_node1 = line.startswith("\t")
        chunks.append((1 if from_node1 else 0, bytes.fromhex(line.strip())))
    return nodes, chunks


def text_keys(data):
    return dict(kv.split("=", 1) for kv in data.decode("latin-1").split("\0") if "=" in kv)


class Stream:
    """Cuts one TCP connection's two byte streams into PDUs."""

    def __init__(self):
        self.buf = {0: b"", 1: b""}
        self.digests = {"HeaderDigest": "None", "DataDigest": "None"}
        self.ffp = False  # digests apply once the login reached full feature phase

    def feed(self, direction, data):
        self.buf[direction] += data
        pdus = []
        while True:
            b = self.buf[direction]
            if len(b) < 48:
                break
            hd = 4 if self.ffp and self.digests["HeaderDigest"] == "CRC32C" else 0
            dd_on = self.ffp and self.digests["DataDigest"] == "CRC32C"
            ahs = b[4] * 4
            dsl = int.from_bytes(b[5:8], "big")
            total = 48 + ahs + hd + dsl + (-dsl % 4) + (4 if dd_on and dsl else 0)
            if len(b) < total:
                break
            pdu, self.buf[direction] = b[:total], b[total:]
            pdus.append(pdu)
            opcode = pdu[0] & 0x3F
            if opcode == 0x23:  # Login Response: track negotiated digests and the phase change
                data = pdu[48 + ahs + hd:48 + ahs + hd + dsl]
                for k, v in text_keys(data).items():
                    if k in self.digests:
                        self.digests[k] = v
                transit, nsg = pdu[1] & 0x80, pdu[1] & 0x03
                if transit and nsg == 3 and pdu[36] == 0:
                    self.ffp = True
        return pdus


def describe(pdu):
    opcode = pdu[0] & 0x3F
    flags = pdu[1]
    itt = int.from_bytes(pdu[16:20], "big")
    dsl = int.from_bytes(pdu[5:8], "big")
    note = ""
    if opcode == 0x01:
        cdb = pdu[32:48]
        note = f"CDB {CDB_NAMES.get(cdb[0], hex(cdb[0]))} {cdb[:10].hex()} EDTL={int.from_bytes(pdu[20:24], 'big')}"
        note += " R" * bool(flags & 0x40) + " W" * bool(flags & 0x20)
    elif opcode in (0x21, 0x25):
        if opcode == 0x21 or flags & 0x01:
            note = f"status=0x{pdu[3]:02x}"
            if flags & 0x06:
                note += f" {'O' if flags & 0x04 else 'U'} residual={int.from_bytes(pdu[44:48], 'big')}"
        if opcode == 0x25:
            note += f" DataSN={int.from_bytes(pdu[36:40], 'big')} offset={int.from_bytes(pdu[40:44], 'big')}"
    elif opcode in (0x03, 0x23, 0x04, 0x24):
        data = pdu[48 + pdu[4] * 4:48 + pdu[4] * 4 + dsl]
        keys = text_keys(data)
        note = f"CSG={(flags >> 2) & 3} NSG={flags & 3} T={flags >> 7} keys={','.join(keys)}"
        if opcode == 0x23:
            note = f"class={pdu[36]} detail={pdu[37]} " + note
    elif opcode in (0x02,):
        note = f"function={flags & 0x7F} RefITT={int.from_bytes(pdu[20:24], 'big'):#x}"
    elif opcode == 0x22:
        note = f"response={pdu[2]}"
    elif opcode == 0x05:
        note = f"DataSN={int.from_bytes(pdu[36:40], 'big')} offset={int.from_bytes(pdu[40:44], 'big')}"
    elif opcode == 0x31:
        note = f"R2TSN={int.from_bytes(pdu[36:40], 'big')} offset={int.from_bytes(pdu[40:44], 'big')} len={int.from_bytes(pdu[44:48], 'big')}"
    elif opcode == 0x3F:
        note = f"reason={pdu[2]:#x}"
    return OPCODES.get(opcode, f"opcode-{opcode:02x}"), f"itt={itt:#x} F={flags >> 7} dsl={dsl} {note}".strip()


def main():
    outdir, port = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.endswith(".bin") or f == "INDEX.tsv":
            os.remove(os.path.join(outdir, f))
    index = ["nnn\tstep\tstream\tdir\topcode\tbytes\tfile\tsummary"]
    n, kept_bulk, kept_large, total_bytes = 0, {}, {}, 0
    for arg in sys.argv[3:]:
        step, pcap = arg.split("=", 1)
        streams = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "tcp.stream", f"tcp.port=={port}"],
                                 check=True, capture_output=True, text=True).stdout.split()
        for stream in sorted(set(streams), key=int):
            nodes, chunks = follow(pcap, stream)
            target_node = 1 if nodes.get(1, "").endswith(f":{port}") else 0
            s = Stream()
            for node, data in chunks:
                direction = "t2i" if node == target_node else "i2t"
                for pdu in s.feed(node, data):
                    n += 1
                    name, summary = describe(pdu)
                    opcode = pdu[0] & 0x3F
                    keep = True
                    if opcode in BULK:
                        # Data-In carrying status with a residual is rare and worth keeping.
                        kind = (opcode, opcode == 0x25 and bool(pdu[1] & 0x01) and bool(pdu[1] & 0x06))
                        keep = kept_bulk.get(kind, 0) < MAX_BULK_SAMPLES and len(pdu) <= 4 * LARGE
                        kept_bulk[kind] = kept_bulk.get(kind, 0) + keep
                    elif len(pdu) > LARGE:
                        keep = kept_large.get(opcode, 0) < MAX_LARGE
                        kept_large[opcode] = kept_large.get(opcode, 0) + keep
                    fname = f"{n:03d}-{direction}-{name}.bin" if keep else "-"
                    if keep:
                        with open(os.path.join(outdir, fname), "wb") as f:
                            f.write(pdu)
                        total_bytes += len(pdu)
                    index.append(f"{n:03d}\t{step}\t{stream}\t{direction}\t{name}\t{len(pdu)}\t{fname}\t{summary}")
            for node, rest in s.buf.items():
                if rest:
                    index.append(f"---\t{step}\t{stream}\t-\t-\t{len(rest)}\t-\tTRAILING {len(rest)} bytes "
                                 f"from node {node} (connection cut mid-PDU; not written)")
    with open(os.path.join(outdir, "INDEX.tsv"), "w") as f:
        f.write("\n".join(index) + "\n")
    print(f"{outdir}: {n} PDUs, {sum(1 for l in index[1:] if not l.split(chr(9))[6] == '-')} written, {total_bytes} bytes")


if __name__ == "__main__":
    main()
