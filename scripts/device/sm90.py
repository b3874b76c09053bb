#!/usr/bin/env python3
"""sm90.py IN OUT: a copy of ONNX Runtime's CUDA provider library whose GPU code is kept for
sm_90 (H100, H200) only, so that it compresses small enough to travel to the device machine.

The library's .nv_fatbin section holds one fat binary per translation unit, each with one
(compressed) cubin per architecture. Every entry keeps its header and size, so nothing moves;
the payloads of entries for other architectures are zeroed. The CUDA driver picks the sm_90
entry on an sm_90 GPU and never reads the others. For the device check only: the result is
useless on any other GPU."""
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50


def fatbin_section(data):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size
    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        name, off, size = header(i)
        if data[stroff + name:].split(b"\0", 1)[0] == b".nv_fatbin":
            return off, size
    sys.exit("no .nv_fatbin section")


def main(src, dst, keep=90):
    data = bytearray(open(src, "rb").read())
    off, size = fatbin_section(data)
    pos, end, kept, zeroed = off, off + size, 0, 0
    while pos < end:
        magic, _ver, hsz, fsz = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:  # alignment padding between fat binaries
            pos += 8
            continue
        e, fe = pos + hsz, pos + hsz + fsz
        while e < fe:
            _kind, _ever, ehsz, psz = struct.unpack_from("<HHIQ", data, e)
            arch, = struct.unpack_from("<I", data, e + 28)
            if arch == keep:
                kept += psz
            else:
                data[e + ehsz:e + ehsz + psz] = bytes(psz)
                zeroed += psz
            e += ehsz + psz
        pos = fe
    if kept == 0:
        sys.exit(f"no sm_{keep} code in {src}")
    open(dst, "wb").write(data)
    print(f"kept {kept / 1e6:.1f} MB of sm_{keep} code, zeroed {zeroed / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
