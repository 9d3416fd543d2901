"""The code `mini tail` runs on the device (minitools.follower): MicroPython, sent with each
exchange, printing its answer as PREFIX + JSON on one line (minitools.mpremote_link)."""

# reqs: {file: [start, stop]} (stop -1: to the end) to read; a file not in reqs is read
# from byte 0 when new0, else only its size and head are sent; only: list no other file.
# Each file: [name, size, head, start (-1: nothing read), the MARK bytes before start, data,
# inode, device] (inode 0: the file system has none, as LittleFS and FAT on a board).
TAIL_CODE = """
import os, json, binascii
def _mini_tail(p, reqs, new0, only, budget, headlen, marklen):
    h = lambda b: binascii.hexlify(b).decode()
    try:
        st = os.stat(p)
    except OSError:
        return None
    d = st[0] & 0x4000
    if d:
        names = [p + '/' + n for n in sorted(os.listdir(p)) if n.startswith('journal-') and n.endswith('.jsonl')]
    else:
        names = [p]
    out = []
    for n in names:
        r = reqs.get(n)
        if r is None and only:
            continue
        if r is None and new0:
            r = [0, -1]
        try:
            st = os.stat(n)
            size = st[6]
            f = open(n, 'rb')
        except OSError:
            continue
        start = -1
        mark = data = b''
        try:
            head = f.read(headlen)
            if r is not None and r[0] <= size:
                start = r[0]
                stop = size if r[1] < 0 else min(size, r[1])
                f.seek(max(0, start - marklen))
                mark = f.read(start - max(0, start - marklen))
                if stop > start and budget > 0:
                    data = f.read(min(stop - start, budget))
                    budget -= len(data)
        finally:
            f.close()
        out.append([n, size, h(head), start, h(mark), h(data), st[1], st[2]])
    return [1 if d else 0, out]
print('%s', json.dumps(_mini_tail('%s', %s, %d, %d, %d, %d, %d)))
"""

# the CRC-32 of a file's bytes from `begin` to each of `ends` (ascending); fewer when it is shorter
SUM_CODE = """
import binascii, json
def _mini_sums(n, begin, ends):
    out = []
    try:
        f = open(n, 'rb')
    except OSError:
        return out
    buf = memoryview(bytearray(4096))
    crc, at = 0, begin
    try:
        f.seek(begin)
        for e in ends:
            while at < e:
                k = f.readinto(buf[:min(4096, e - at)])
                if not k:
                    return out
                crc = binascii.crc32(buf[:k], crc)
                at += k
            out.append(crc)
    finally:
        f.close()
    return out
print('%s', json.dumps(_mini_sums('%s', %d, %s)))
"""
