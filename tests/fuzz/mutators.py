"""mutators.py: the fuzzer's mutations (tests/fuzz/fuzz.py), each a function of a seeded random
generator that returns a description of what it changed: config texts (values, keys, tables,
bytes), llm.c-format token files and their metadata, and checkpoints, either left with checksums
that no longer match or resealed (the manifest's XXH3 recomputed over the changed bytes, so that
HDF5 and nupipe's own checks parse what was changed)."""
import json
import os
import re
import struct

try:
    import xxhash
except ImportError:  # resealing needs it; fuzz.py reports the skip
    xxhash = None

# Values that break parsers and range checks: zero, signs, the int32/int64 and float edges,
# non-numbers, wrong types, empty and non-UTF-8 strings, nested arrays, inline tables.
INTERESTING = ["0", "-1", "1", "2", "3", "7", "2147483647", "2147483648", "-2147483649",
               "9223372036854775807", "-9223372036854775808", "1e308", "-1e308", "5e-324",
               "nan", "inf", "-inf", "0.5", "-0.0", "1.0", "true", "false", '""', '"x"',
               '"uniform"', '"auto"', '"none"', '"\xff\xfe"', '"\\u0000"', "[]", "[1]", "[0, 0]",
               "[1, 2, 3]", "[-1, 5]", "[[1], [2]]", '["a", 1]', "{}", "{a = 1}",
               '"' + "a" * 5000 + '"', "1979-05-27T07:32:00Z", "0x10", "1_000"]
# Keys whose value sets the run's length: only values that end it quickly, or are refused.
LENGTH_KEYS = {"steps", "train_tokens", "val_tokens", "val_batches", "global_batch",
               "n_layer", "d_model", "seq_len", "vocab_size", "n_head", "micro_batch",
               "peer_timeout_s", "every", "keep_every"}
SHORT = ["0", "-1", "1", "2", "3", "-2147483649", "9223372036854775807", "nan", "inf", "1.5",
         '"x"', "[]", "true"]
# Keys that name where outputs go: fuzz.py pins them inside the case's directory.
PINNED = {"dir", "resume"}
SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
KEYLINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def _keylines(lines):
    out, section = [], ""
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        k = KEYLINE.match(line)
        if k and k.group(1) not in PINNED:
            out.append((i, section, k.group(1)))
    return out


def mutate_config(rnd, text):
    """One to three edits of a TOML text; returns (new bytes, description)."""
    lines = text.splitlines()
    what = []
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        keys = _keylines(lines)
        op = rnd.choice(["value"] * 6 + ["delete", "duplicate", "unknown", "table", "override"])
        i, section, key = rnd.choice(keys)
        if op == "value":
            v = rnd.choice(SHORT if key in LENGTH_KEYS else INTERESTING)
            lines[i] = "%s = %s" % (key, v)
            what.append("%s.%s = %s" % (section, key, v[:40]))
        elif op == "delete":
            del lines[i]
            what.append("deleted %s.%s" % (section, key))
        elif op == "duplicate":
            lines.insert(i, lines[i])
            what.append("duplicated %s.%s" % (section, key))
        elif op == "unknown":
            lines.insert(i, "%s_typo = 1" % key)
            what.append("unknown key %s.%s_typo" % (section, key))
        elif op == "table":
            heads = [j for j, l in enumerate(lines) if SECTION.match(l)]
            j = rnd.choice(heads)
            new = rnd.choice(["[model.extra]", "[unknown]", "[train]", "[[parallel]]", "["])
            what.append("table %s -> %s" % (lines[j], new))
            lines[j] = new
        else:  # a key of one table moved under another
            heads = [j for j, l in enumerate(lines) if SECTION.match(l)]
            j = rnd.choice(heads)
            line = lines.pop(i)
            lines.insert(j + 1 if j < i else j, line)
            what.append("%s.%s moved under %s" % (section, key, lines[j]))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if rnd.random() < 0.15:  # and sometimes raw bytes: truncation, a stray non-UTF-8 byte
        if rnd.random() < 0.5:
            n = rnd.randrange(len(data))
            data = data[:n]
            what.append("truncated at byte %d" % n)
        else:
            n = rnd.randrange(len(data))
            data = data[:n] + bytes([rnd.choice([0x00, 0x80, 0xc3, 0xfe, 0xff])]) + data[n:]
            what.append("a stray byte at %d" % n)
    return data, "; ".join(what)


def mutate_tokens(rnd, data, meta):
    """An llm.c token file (256 int32 header, uint16 tokens) and its .json metadata, changed;
    returns (file bytes, meta bytes or None to delete it, description)."""
    b = bytearray(data)
    op = rnd.choice(["header", "header", "token", "truncate", "append", "empty", "meta"])
    if op == "header":
        field = rnd.choice([0, 1, 2, 3, 255])
        v = rnd.choice([0, 1, -1, 2, 20240519, 20240520, 2 ** 31 - 1, -2 ** 31,
                        struct.unpack("<i", b[8:12])[0] + rnd.choice([-1, 1, 1000])])
        b[4 * field:4 * field + 4] = struct.pack("<i", v)
        return bytes(b), meta, "header[%d] = %d" % (field, v)
    if op == "token":
        pos = 1024 + 2 * rnd.randrange((len(b) - 1024) // 2)
        v = rnd.choice([255, 256, 257, 50256, 50257, 65535])
        b[pos:pos + 2] = struct.pack("<H", v)
        return bytes(b), meta, "token at byte %d = %d" % (pos, v)
    if op == "truncate":
        n = rnd.choice([0, 3, 1023, 1024, 1025, 1026, len(b) - 1, rnd.randrange(len(b))])
        return bytes(b[:n]), meta, "truncated to %d bytes" % n
    if op == "append":
        extra = bytes(rnd.randrange(256) for _ in range(rnd.choice([1, 2, 3, 4096])))
        return bytes(b) + extra, meta, "%d bytes appended" % len(extra)
    if op == "empty":
        return b"", meta, "empty file"
    m = json.loads(meta)
    key = rnd.choice(sorted(m))
    m[key] = rnd.choice([None, -1, 0, 2 ** 63, "x", "\udcff", [], {}])
    text = json.dumps(m, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return bytes(b), text if rnd.random() < 0.9 else None, "meta %s = %r" % (key, m[key])


def _json_mutate(rnd, obj, path=""):
    """Changes one value somewhere in a JSON tree; returns the description."""
    if isinstance(obj, dict) and obj:
        k = rnd.choice(sorted(obj))
        if rnd.random() < 0.35 or not isinstance(obj[k], (dict, list)):
            op = rnd.random()
            if op < 0.15:
                del obj[k]
                return "deleted %s%s" % (path, k)
            old = obj[k]
            obj[k] = _json_value(rnd, old)
            return "%s%s: %r -> %r" % (path, k, str(old)[:30], str(obj[k])[:30])
        return _json_mutate(rnd, obj[k], path + k + ".")
    if isinstance(obj, list) and obj:
        i = rnd.randrange(len(obj))
        if rnd.random() < 0.2:
            del obj[i]
            return "deleted %s[%d]" % (path, i)
        if rnd.random() < 0.1:
            obj.insert(i, obj[i])
            return "duplicated %s[%d]" % (path, i)
        if not isinstance(obj[i], (dict, list)):
            obj[i] = _json_value(rnd, obj[i])
            return "%s[%d] changed" % (path, i)
        return _json_mutate(rnd, obj[i], "%s[%d]." % (path, i))
    return "nothing"


def _json_value(rnd, old):
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return rnd.choice([old + 1, old - 1, 0, -1, old * 2, 2 ** 31, 2 ** 63, -2 ** 63, 1e300,
                           str(old), None])
    if isinstance(old, str):
        return rnd.choice(["", old + "x", old[:-1], old.upper(), "\udcff" + old, 7, None,
                           "../" + old, old.replace("0", "1")])
    return rnd.choice([None, 0, "", [], {}])


def reseal(manifest, state, rnd, regions=None):
    """Changes 1..8 bytes inside one region of state.h5 (bytes) and recomputes that region's
    XXH3 in the manifest (a dict), as a tool that rewrote the file consistently would."""
    regs = regions or manifest["files"][0]["regions"]
    meta = [r for r in regs if r["what"] == "hdf5 metadata"]
    r = rnd.choice(meta) if meta and rnd.random() < 0.7 else rnd.choice(regs)
    b = bytearray(state)
    for _ in range(rnd.randint(1, 8)):
        pos = r["offset"] + rnd.randrange(r["bytes"])
        b[pos] = rnd.choice([0x00, 0xff, b[pos] ^ (1 << rnd.randrange(8)), rnd.randrange(256)])
    r["xxh3"] = "%016x" % xxhash.xxh3_64_intdigest(bytes(b[r["offset"]:r["offset"] + r["bytes"]]))
    return bytes(b), "resealed bytes in %s at [%d, +%d)" % (r["what"], r["offset"], r["bytes"])


def mutate_checkpoint(rnd, d):
    """Changes the checkpoint directory d in place (manifest.json, state.h5, the files);
    returns the description."""
    man_path, h5_path = os.path.join(d, "manifest.json"), os.path.join(d, "state.h5")
    op = rnd.choice(["reseal"] * 4 + ["manifest"] * 3 + ["bytes", "truncate", "files"]) \
        if xxhash else rnd.choice(["manifest"] * 3 + ["bytes", "truncate", "files"])
    if op == "reseal":
        with open(man_path) as f:
            m = json.load(f)
        with open(h5_path, "rb") as f:
            state = f.read()
        state, what = reseal(m, state, rnd)
        with open(h5_path, "wb") as f:
            f.write(state)
        with open(man_path, "w") as f:
            json.dump(m, f, indent=1)
        return what
    if op == "manifest":
        with open(man_path) as f:
            m = json.load(f)
        what = _json_mutate(rnd, m)
        text = json.dumps(m, indent=1, ensure_ascii=False).encode("utf-8", "surrogateescape")
        if rnd.random() < 0.1:
            text = text[:rnd.randrange(len(text))]
            what += "; truncated"
        with open(man_path, "wb") as f:
            f.write(text)
        return "manifest " + what
    if op == "bytes":
        with open(h5_path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            pos = rnd.randrange(size)
            f.seek(pos)
            f.write(bytes([rnd.randrange(256)]))
        return "state.h5 byte %d overwritten" % pos
    if op == "truncate":
        size = os.path.getsize(h5_path)
        n = rnd.choice([0, 8, 512, size // 2, size - 1])
        os.truncate(h5_path, n)
        return "state.h5 truncated to %d bytes" % n
    victim = rnd.choice(["manifest.json", "state.h5"])
    how = rnd.choice(["deleted", "emptied", "a directory"])
    p = os.path.join(d, victim)
    os.remove(p)
    if how == "emptied":
        open(p, "wb").close()
    elif how == "a directory":
        os.mkdir(p)
    return "%s %s" % (victim, how)
