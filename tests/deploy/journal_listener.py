# SPDX-License-Identifier: MIT
# A stand-in for journald's native socket, for tests: an AF_UNIX datagram socket that parses each
# datagram as journald does (systemd's journald-native.c): `KEY=value\n`, or `KEY\n`, a 64-bit
# little-endian length, the value and `\n`; a datagram with no data that carries one descriptor
# (SCM_RIGHTS) is a sealed memfd holding the entry. Field names as journald accepts them: at most
# 64 characters of A-Z, 0-9 and _, not starting with a digit; a leading _ (trusted fields) is
# dropped as journald drops it. Python 3.6+.
#
#   with Listener(path) as j:            # binds path; a thread collects entries
#       ... run the program with FORKSAFE_LOG=journal:path ...
#       entries = j.wait(lambda es: len(es) >= 3, timeout=30)
# Each entry is a dict: name -> list of values (bytes), in order; `errors` lists protocol errors.
import array
import fcntl
import os
import socket
import struct
import threading
import time

F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
SEALS_NEEDED = 0x0002 | 0x0004 | 0x0008  # shrink, grow, write (journald's memfd_get_sealed)


def valid_name(name):
    if not name or len(name) > 64 or name[0:1].isdigit():
        return False
    return all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_" for c in name)


def parse(data):
    """Returns (fields, errors): fields a dict name -> [values]."""
    fields, errors, i = {}, [], 0
    while i < len(data):
        nl = data.find(b"\n", i)
        if nl < 0:
            errors.append("field without a final newline at %d" % i)
            break
        line = data[i:nl]
        eq = line.find(b"=")
        if eq >= 0:
            name, val, i = line[:eq], line[eq + 1:], nl + 1
        else:
            name = line
            if nl + 9 > len(data):
                errors.append("binary field %r: no length" % name)
                break
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            start = nl + 9
            if start + n + 1 > len(data) or data[start + n:start + n + 1] != b"\n":
                errors.append("binary field %r: bad length %d" % (name, n))
                break
            val, i = data[start:start + n], start + n + 1
        if name.startswith(b"_"):
            continue  # journald drops trusted fields a client sends
        if not valid_name(name):
            errors.append("invalid field name %r" % name)
            continue
        fields.setdefault(name.decode(), []).append(val)
    return fields, errors


class Listener(object):
    def __init__(self, path):
        self.path = path
        self.entries, self.errors, self.memfds, self.datagrams = [], [], 0, 0
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(10)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _run(self):
        fds = array.array("i")
        while not self.stopping:
            try:
                data, anc, flags, _ = self.sock.recvmsg(32 << 20, socket.CMSG_SPACE(16 * fds.itemsize))
            except socket.timeout:
                continue
            except OSError:
                break
            got = []
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                    got.extend(a)
            errors = []
            if flags & socket.MSG_TRUNC:
                errors.append("datagram truncated")
            if got:
                if data or len(got) != 1:
                    errors.append("descriptor passed with data or several descriptors")
                fd = got[0]
                try:
                    seals = fcntl.fcntl(fd, F_GET_SEALS)
                    if seals & SEALS_NEEDED != SEALS_NEEDED:
                        errors.append("memfd not sealed (seals %#x)" % seals)
                    os.lseek(fd, 0, 0)
                    chunks = []
                    while True:
                        c = os.read(fd, 1 << 20)
                        if not c:
                            break
                        chunks.append(c)
                    data = b"".join(chunks)
                finally:
                    for f in got:
                        os.close(f)
                self.memfds += 1
            fields, perr = parse(data)
            with self.cond:
                self.datagrams += 1
                self.errors.extend(errors + perr)
                if fields:
                    self.entries.append(fields)
                self.cond.notify_all()

    def wait(self, pred, timeout):
        """Waits until pred(entries) is true or `timeout` seconds pass; returns the entries."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.entries):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.entries)


def text(entry, name, i=0):
    v = entry.get(name)
    return v[i].decode("utf-8", "replace") if v and len(v) > i else None
