#!/usr/bin/python3
"""xgrad-charlm checkpoints and PyTorch, both ways (an optional tool: Debian's python3-torch).

  torch_interop.py eval --checkpoint model.safetensors --corpus text.txt
      loads an xgrad-charlm checkpoint into torch.nn.RNN/LSTM/GRU + Linear and prints the bits per
      character of the text, computed as `xgrad-charlm eval` does (the same streams, in float64);
  torch_interop.py export --corpus text.txt --out model.safetensors [--cell gru --hidden 32 --steps 300]
      trains a small model in PyTorch and writes it as an xgrad-charlm checkpoint, which
      `xgrad-charlm sample` and `eval` read; prints the bits per character PyTorch computes for it.

A checkpoint is checked by the rules xgrad-charlm applies, written once in docs/charlm.md ("The checkpoint
format"), before torch is imported: a file xgrad-charlm refuses is refused here too, in one line
"torch_interop.py: <file>: <what was wrong>" and exit status 1. The content hashes need Debian's
python3-xxhash.
"""
import argparse
import json
import math
import os
import re
import struct
import sys
from array import array

PROGRAM = "torch_interop.py"
FORMAT_VERSION = 1                          # the newest checkpoint format this script reads
MAX_HEADER = 100_000_000                    # safetensors' header size cap
MAX_RANK = 64
U64_MAX = 2**64 - 1
MAX_SIZE = 2**30                            # hidden, layers, seq and batch
MAX_STEPS = 2**53                           # step and optimizer.step
MAX_CHARACTERS = 2**40                      # train_chars
HASH_PREFIX = "xgrad.xxh3_64:"
CELL_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
OPTIMIZERS = ["sgd", "momentum", "adam", "adamw", "adagrad", "rmsprop"]
DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
UNSUPPORTED_DTYPES = {"I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"}


class Refused(Exception):
    """What the user is told, in one line: the file (or flag) at fault and what was wrong with it."""

    def __init__(self, where, what):
        super().__init__(f"{where}: {what}")


# ---------------------------------------------------------------------------------------------------------------
# JSON as xgrad reads it (nlohmann::json): no duplicate keys, no NaN or Infinity, and a number is a
# count only when written as an integer without a minus sign that fits 64 bits.

def _integer(text):
    value = int(text)
    # nlohmann holds a literal with a minus sign as signed and one beyond 64 bits as a float: neither is a count.
    return value if not text.startswith("-") and value <= U64_MAX else float(text)


def _float(text):
    value = float(text)
    if not math.isfinite(value):  # Python would read 1e400 as infinity
        raise ValueError(f"number overflow parsing '{text}'")
    return value


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _object(pairs):
    keys = set()
    for key, _ in pairs:
        if key in keys:
            raise ValueError(f"duplicate key {json.dumps(key)}")
        keys.add(key)
    return dict(pairs)


def _check_strings(value):
    """Python's json reads a lone surrogate escape ("\\ud800") into a str; nlohmann, as UTF-8 requires, refuses it."""
    pending = [value]
    while pending:  # no recursion: the nesting depth is the file's to choose
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"a string holds a lone surrogate escape: {json.dumps(item)[:40]}") from None


def parse_json(text, where, what):
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_no_constant, object_pairs_hook=_object)
        _check_strings(value)
        return value
    except ValueError as e:  # json.JSONDecodeError included
        raise Refused(where, f"{what}: {e}") from None
    except RecursionError:  # Python's reader recurses once per nesting level
        raise Refused(where, f"{what}: nested too deeply") from None


def is_count(value):
    return type(value) is int  # bool is an int subclass, and not a count


def type_name(value):
    for kind, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"), ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null"


def shape_str(shape):
    return f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"


# ---------------------------------------------------------------------------------------------------------------
# safetensors, with xgrad's checks: header size cap, known dtypes, exact byte counts, byte ranges that tile the
# data section, and the content hashes xgrad's writer adds.

def parse_entry(path, name, entry):
    tensor = f"tensor {json.dumps(name)}"
    if not isinstance(entry, dict):
        raise Refused(path, f"{tensor}: entry must be an object, not {type_name(entry)}")
    for key in entry:
        if key not in ("dtype", "shape", "data_offsets"):
            raise Refused(path, f"{tensor}: unexpected key {json.dumps(key)} (expected dtype, shape and data_offsets)")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise Refused(path, f"{tensor}: missing {key}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise Refused(path, f"{tensor}: dtype must be a string, not {json.dumps(dtype)}")
    if dtype in UNSUPPORTED_DTYPES:
        raise Refused(path, f"{tensor}: dtype {dtype} is not supported (xgrad reads F64, F32, F16 and BF16)")
    if dtype not in DTYPES:
        raise Refused(path, f"{tensor}: unknown dtype {json.dumps(dtype)}")
    if not isinstance(shape, list) or not all(map(is_count, shape)):
        raise Refused(path, f"{tensor}: shape must be an array of non-negative integers")
    if len(shape) > MAX_RANK:
        raise Refused(path, f"{tensor}: rank {len(shape)} exceeds the limit of {MAX_RANK}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(is_count, offsets)):
        raise Refused(path, f"{tensor}: data_offsets must be an array of two non-negative integers, not {json.dumps(offsets)}")
    begin, end = offsets
    if begin > end:
        raise Refused(path, f"{tensor}: data_offsets [{begin}, {end}] end before they begin")
    count = 1
    for d in shape:  # left to right, as xgrad and the reference do
        count *= d
        if count > U64_MAX:
            break
    if count > U64_MAX // DTYPES[dtype]:
        raise Refused(path, f"{tensor}: shape {shape_str(shape)} overflows the element or byte count")
    if count * DTYPES[dtype] != end - begin:
        raise Refused(path, f"{tensor}: shape {shape_str(shape)} of {dtype} needs {count * DTYPES[dtype]} bytes but "
                            f"data_offsets [{begin}, {end}] hold {end - begin}")
    return {"name": name, "dtype": dtype, "shape": shape, "begin": begin, "end": end}


def check_tiling(path, entries, data_start, data_size):
    """Sorted by position, the byte ranges must tile the data section exactly (the reference's rule)."""
    cursor, previous = 0, None
    for e in sorted(entries, key=lambda e: (e["begin"], e["end"])):
        where = f"tensor {json.dumps(e['name'])} (data_offsets [{e['begin']}, {e['end']}])"
        if e["begin"] < cursor:
            raise Refused(path, f"{where} overlaps tensor {json.dumps(previous['name'])}, which ends at {cursor} "
                                f"(byte offset {data_start + e['begin']})")
        if e["end"] > data_size:
            raise Refused(path, f"{where} runs past the end of the file, whose data section holds {data_size} bytes "
                                f"(truncated?) (byte offset {data_start + data_size})")
        if e["begin"] > cursor:
            raise Refused(path, f"{e['begin'] - cursor} unused bytes before {where} (byte offset {data_start + cursor})")
        cursor, previous = e["end"], e
    if cursor != data_size:
        raise Refused(path, f"{data_size - cursor} trailing bytes after the last tensor (byte offset {data_start + cursor})")


def xxhash_module():
    try:
        import xxhash  # Debian's python3-xxhash
    except ImportError:
        raise Refused("xxhash", "cannot be imported, and xgrad's content hashes need it (Debian: apt-get install "
                                "python3-xxhash)") from None
    return xxhash


def xxh3_64(data):
    return xxhash_module().xxh3_64_hexdigest(data)


def metadata_hash(metadata):
    """XXH3-64 of every metadata entry (in byte order of the keys), key and value each after its u64 length."""
    encoded = b""
    for key in sorted(metadata, key=lambda k: k.encode()):
        for text in (key.encode(), metadata[key].encode()):
            encoded += struct.pack("<Q", len(text)) + text
    return xxh3_64(encoded)


def verify_hashes(path, metadata, entries, data, data_start):
    """Removes the hashes from `metadata` and checks them: none at all (another writer's file), or one for the
    metadata and one for every tensor, each matching."""
    hashes = {k[len(HASH_PREFIX):]: metadata.pop(k) for k in list(metadata) if k.startswith(HASH_PREFIX)}
    if not hashes:
        return
    if "__metadata__" not in hashes:
        raise Refused(path, "the metadata has no content hash, though the file has others")
    stored, computed = hashes.pop("__metadata__"), metadata_hash(metadata)
    if stored != computed:
        raise Refused(path, f"the metadata does not match its content hash (stored {json.dumps(stored)}, computed "
                            f"{computed}): the file is damaged")
    for e in entries:
        if e["name"] not in hashes:
            raise Refused(path, f"tensor {json.dumps(e['name'])} has no content hash, though the file's other tensors do")
        stored, computed = hashes.pop(e["name"]), xxh3_64(data[e["begin"]:e["end"]])
        if stored != computed:
            raise Refused(path, f"tensor {json.dumps(e['name'])}: its bytes do not match their content hash (stored "
                                f"{json.dumps(stored)}, computed {computed}): the file is damaged (byte offset "
                                f"{data_start + e['begin']})")
    if hashes:
        raise Refused(path, f"a content hash for tensor {json.dumps(min(hashes))}, which the file does not hold")


def decode(dtype, raw):
    """The values as float32, as xgrad converts them (a float64 beyond float32's range becomes infinite)."""
    if dtype == "F32":
        return array("f", raw)
    if dtype == "F64":
        return array("f", array("d", raw))
    if dtype == "F16":
        return array("f", struct.unpack(f"<{len(raw) // 2}e", raw))
    return array("f", array("I", (b << 16 for b in array("H", raw))).tobytes())  # BF16: a float32's top half


def read_safetensors(path):
    """{name: (float32 values, shape)} and the metadata (without the hashes), or Refused."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise Refused(path, f"file is {len(data)} bytes, shorter than the 8-byte header length (byte offset 0)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER:
        raise Refused(path, f"header length {n} exceeds the limit of {MAX_HEADER} bytes (byte offset 0)")
    if n > len(data) - 8:
        raise Refused(path, f"header length {n} runs past the end of the file ({len(data)} bytes) (byte offset 0)")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused(path, f"malformed JSON header: invalid UTF-8 (byte offset {8 + e.start})") from None
    root = parse_json(text, path, "malformed JSON header")
    if not isinstance(root, dict):
        raise Refused(path, f"the JSON header must be an object, not {type_name(root)} (byte offset 8)")
    metadata = root.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise Refused(path, f"__metadata__ must be an object, not {type_name(metadata)}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise Refused(path, f"__metadata__ value for {json.dumps(key)} must be a string, not {type_name(value)}")
    entries = [parse_entry(path, name, entry) for name, entry in root.items()]
    body = data[8 + n:]
    check_tiling(path, entries, 8 + n, len(body))
    verify_hashes(path, metadata, entries, body, 8 + n)
    tensors = {e["name"]: (decode(e["dtype"], body[e["begin"]:e["end"]]), e["shape"]) for e in entries}
    return tensors, metadata


# ---------------------------------------------------------------------------------------------------------------
# The checkpoint's own rules, in xgrad-charlm's order (examples/charlm/checkpoint.cpp).

def parse_int(path, key, text, largest):
    # std::stoll's syntax: leading white space, an optional sign, decimal digits, nothing after them.
    if not re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]+", text) or not 0 <= int(text) <= largest:
        raise Refused(path, f"metadata '{key}' is not an integer in [0, {largest}]")
    return int(text)


def read_config(path, text):
    config = parse_json(text, path, "malformed configuration or vocabulary")
    if not isinstance(config, dict):
        raise Refused(path, f"malformed configuration or vocabulary: the configuration is {type_name(config)}, not an object")
    for key in ("cell", "hidden", "layers", "seq", "batch", "dropout", "lr", "clip", "optimizer", "impl", "seed",
                "val_fraction", "zoneout", "variational_dropout"):
        if key not in config:
            raise Refused(path, f"malformed configuration or vocabulary: key '{key}' not found")
        value = config[key]
        if key in ("cell", "optimizer", "impl") and not isinstance(value, str):
            raise Refused(path, f"malformed configuration or vocabulary: '{key}' must be a string, not {type_name(value)}")
        if key in ("hidden", "layers", "seq", "batch", "seed") and not is_count(value):
            raise Refused(path, f"configuration: '{key}' = {json.dumps(value)} is not a non-negative integer")
        if key in ("hidden", "layers", "seq", "batch") and value > MAX_SIZE:
            raise Refused(path, f"configuration: '{key}' = {value} is out of range")
        if key in ("dropout", "lr", "clip", "val_fraction", "zoneout", "variational_dropout"):
            if not isinstance(value, (int, float)):  # nlohmann reads a boolean as a number too
                raise Refused(path, f"malformed configuration or vocabulary: '{key}' must be a number, not {type_name(value)}")
            config[key] = float(value)
    return config


def read_vocabulary(path, text):
    symbols = parse_json(text, path, "malformed configuration or vocabulary")
    if not isinstance(symbols, list):
        raise Refused(path, f"the vocabulary is {type_name(symbols)}, not an array")
    for v in symbols:
        if not is_count(v) or v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            raise Refused(path, f"vocabulary entry {json.dumps(v)} is not a Unicode scalar value")
    if any(a >= b for a, b in zip(symbols, symbols[1:])):
        raise Refused(path, "vocabulary: symbols must be sorted and distinct")
    return symbols


def validate_config(path, c):
    if c["cell"] not in CELL_GATES:
        raise Refused(path, f"cell '{c['cell']}' is not one of {', '.join(CELL_GATES)}")
    if c["impl"] not in ("graph", "fused"):
        raise Refused(path, f"impl '{c['impl']}' is not graph or fused")
    if c["optimizer"] not in OPTIMIZERS:
        raise Refused(path, f"unknown optimizer '{c['optimizer']}' ({', '.join(OPTIMIZERS)})")
    for key in ("hidden", "layers", "seq", "batch"):
        if not 1 <= c[key] <= MAX_SIZE:
            raise Refused(path, f"{key} = {c[key]} is out of range")
    for key in ("lr", "clip"):
        if not (c[key] > 0 and math.isfinite(c[key])):
            raise Refused(path, f"{key} = {c[key]} must be positive")
    for key in ("dropout", "zoneout", "variational_dropout"):
        if not 0 <= c[key] < 1:
            raise Refused(path, f"{key} = {c[key]} is not in [0, 1)")
    if not 0 <= c["val_fraction"] <= 0.9:
        raise Refused(path, f"val_fraction = {c['val_fraction']} is not in [0, 0.9]")


def parameter_count(c, vocabulary):
    """What model_shapes adds up to, without listing a layer at a time."""
    rows, hidden, layers = CELL_GATES[c["cell"]] * c["hidden"], c["hidden"], c["layers"]
    return rows * (vocabulary + hidden + 2) + (layers - 1) * rows * (2 * hidden + 2) + vocabulary * (hidden + 1)


def model_shapes(c, vocabulary):
    """The model's parameters, PyTorch's names and shapes (nn.RNN/LSTM/GRU and a Linear head)."""
    rows, hidden = CELL_GATES[c["cell"]] * c["hidden"], c["hidden"]
    shapes = {}
    for k in range(c["layers"]):
        shapes.update({f"rnn.weight_ih_l{k}": [rows, vocabulary if k == 0 else hidden], f"rnn.weight_hh_l{k}": [rows, hidden],
                       f"rnn.bias_ih_l{k}": [rows], f"rnn.bias_hh_l{k}": [rows]})
    shapes.update({"head.weight": [vocabulary, hidden], "head.bias": [vocabulary]})
    return shapes


def check_dropout_rng(path, text):
    # std::mt19937_64's 312 words and position, then xgrad::Generator's spare flag and spare value.
    fields = text.split()
    if len(fields) < 315 or not all(re.fullmatch("[0-9]+", f) and int(f) <= U64_MAX for f in fields[:313]) or fields[313] not in ("0", "1"):
        raise Refused(path, "Generator::set_state: malformed generator state")


def read_checkpoint(path):
    """Everything xgrad-charlm checks before it evaluates a checkpoint; returns (config, vocabulary, weights)."""
    tensors, metadata = read_safetensors(path)

    def meta(key):
        if key not in metadata:
            raise Refused(path, f"no '{key}' in its metadata")
        return metadata[key]

    if metadata.get("format") != "xgrad-charlm":
        raise Refused(path, "not an xgrad-charlm checkpoint (no format 'xgrad-charlm' in its metadata)")
    version = parse_int(path, "format_version", meta("format_version"), 1 << 20)
    if version > FORMAT_VERSION:
        raise Refused(path, f"format version {version} is newer than this program reads ({FORMAT_VERSION})")
    config = read_config(path, meta("config"))
    symbols = read_vocabulary(path, meta("vocabulary"))
    validate_config(path, config)
    if len(symbols) < 2:
        raise Refused(path, "a vocabulary of fewer than 2 characters")
    stored = sum(len(values) for name, (values, _) in tensors.items() if name.startswith("model."))
    needed = parameter_count(config, len(symbols))  # before the shapes: a crafted layer count may be huge
    if stored != needed:
        raise Refused(path, f"its model tensors hold {stored} values, its configuration needs {needed}")
    expected = model_shapes(config, len(symbols))
    parse_int(path, "step", meta("step"), MAX_STEPS)
    parse_int(path, "optimizer.step", meta("optimizer.step"), MAX_STEPS)
    train_chars = parse_int(path, "train_chars", meta("train_chars"), MAX_CHARACTERS)
    parse_int(path, "data_position", meta("data_position"), train_chars)
    # Damaged or diverged weights would print garbage or NaN bits per character with exit status 0.
    for name in sorted(tensors, key=str.encode):
        values = tensors[name][0]
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise Refused(path, f"tensor '{name}' holds {values[bad]} at flat index {bad}")
    state_shape = [config["layers"], config["batch"], config["hidden"]]
    for key in ["state.hidden"] + (["state.cell"] if config["cell"] == "lstm" else []):
        if key not in tensors or tensors[key][1] != state_shape:
            raise Refused(path, f"'{key}' missing or not of shape {shape_str(state_shape)}")
    check_dropout_rng(path, meta("dropout_rng"))
    weights = {name[len("model."):]: t for name, t in tensors.items() if name.startswith("model.")}
    for name, shape in expected.items():
        if name not in weights:
            raise Refused(path, f"missing parameter '{name}' of shape {shape_str(shape)}")
        if weights[name][1] != shape:
            raise Refused(path, f"parameter '{name}' has shape {shape_str(weights[name][1])} in the state dict, "
                                f"expected {shape_str(shape)}")
    for name, (_, shape) in weights.items():
        if name not in expected:
            raise Refused(path, f"unexpected parameter '{name}' of shape {shape_str(shape)}")
    return config, symbols, weights


# ---------------------------------------------------------------------------------------------------------------
# Corpora, as xgrad-charlm reads them

def decode_text(path, data):
    try:
        text = data.decode("utf-8")  # strict: no overlong forms, surrogates or code points past U+10FFFF
    except UnicodeDecodeError as e:
        raise Refused(path, f"not UTF-8 text: {e.reason} at byte offset {e.start}") from None
    if "\0" in text:
        raise Refused(path, f"not UTF-8 text: NUL byte (binary data) at byte offset {data.index(0)}")
    return text


def load_corpus(path):
    """A UTF-8 file, or a folder whose regular files are read in name order (files that are not UTF-8 text, and
    symbolic links, are skipped)."""
    if os.path.isdir(path):
        text = ""
        for name in sorted(os.listdir(path), key=os.fsencode):
            file = os.path.join(path, name)
            if os.path.islink(file) or not os.path.isfile(file):
                continue
            try:
                with open(file, "rb") as f:
                    text += decode_text(file, f.read())
            except (OSError, Refused):
                continue
        if not text:
            raise Refused(path, "the folder has no readable, non-empty UTF-8 text files")
        return text
    if not os.path.exists(path):
        raise Refused(path, "no such file or folder")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise Refused(path, "the file is empty")
    return decode_text(path, data)


# ---------------------------------------------------------------------------------------------------------------
# Writing, as xgrad writes checkpoints: a temporary file beside the target, every byte written, flushed and
# fsynced, renamed over the target, the folder fsynced. Any failure leaves the previous file as it was.

def temporary_name(path):
    return f"{path}.tmp.{os.getpid()}.0"  # xgrad's pattern, so its writer removes one left by a killed run


def write_atomic(path, data):
    temporary = temporary_name(path)
    try:
        with open(temporary, "xb") as f:  # x: never another process's file
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as e:
        raise Refused(path, f"cannot write: {e.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def check_writable(path):
    """Fails now, not after training: creates and removes the very temporary file write_atomic will use."""
    if os.path.isdir(path):
        raise Refused(path, "is a folder, not a file")
    try:
        with open(temporary_name(path), "xb"):
            pass
        os.remove(temporary_name(path))
    except OSError as e:
        raise Refused(path, f"cannot write: {e.strerror}") from None


def same_file(a, b):
    """Whether two names are one file: the same device and inode, or the same path once resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def safetensors_bytes(tensors, metadata):
    """tensors: {name: float32 bytes, shape}; with xgrad's content hashes, tensors in name order."""
    names = sorted(tensors, key=str.encode)
    metadata = dict(metadata)
    metadata[HASH_PREFIX + "__metadata__"] = metadata_hash(metadata)
    header, offset = {"__metadata__": metadata}, 0
    for name in names:
        blob, shape = tensors[name]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        metadata[HASH_PREFIX + name] = xxh3_64(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(tensors[name][0] for name in names)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch

def import_torch():
    try:
        import torch
    except ImportError as e:
        raise Refused("torch", f"cannot be imported ({e}; Debian: apt-get install python3-torch)") from None
    torch.set_num_threads(1)
    return torch


def char_lm(torch, cell, vocabulary, hidden, layers):
    """xgrad-charlm's model: one-hot characters -> RNN/LSTM/GRU -> Linear."""

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.rnn = kind(vocabulary, hidden, layers)
            self.head = torch.nn.Linear(hidden, vocabulary)

        def forward(self, ids, state=None):  # ids (T, B) -> logits (T, B, V)
            x = torch.nn.functional.one_hot(ids, vocabulary).to(self.head.weight.dtype)
            output, state = self.rnn(x, state)
            return self.head(output), state

    return CharLM()


def bits_per_char(torch, model, ids):
    """Bits per character as xgrad-charlm's bits_per_char: up to 64 contiguous streams, each run
    from a zero state, every character but each stream's first predicted."""
    streams = min(max(len(ids) // 1024, 1), 64)
    begin = [0]
    for b in range(streams):
        begin.append(begin[-1] + len(ids) // streams + (1 if b < len(ids) % streams else 0))
    nats = 0.0
    with torch.no_grad():
        for b in range(streams):
            stream = torch.tensor(ids[begin[b]:begin[b + 1]], dtype=torch.long).unsqueeze(1)
            logits, _ = model(stream[:-1])
            nats += torch.nn.functional.cross_entropy(logits.squeeze(1), stream[1:, 0], reduction="sum").item()
    return nats / math.log(2) / (len(ids) - streams)


def evaluate(args):
    config, symbols, weights = read_checkpoint(args.checkpoint)
    if config["zoneout"] or config["variational_dropout"]:
        raise Refused(args.checkpoint, "zoneout and variational dropout have no torch.nn counterpart")
    index = {chr(c): i for i, c in enumerate(symbols)}
    ids = [index[c] for c in load_corpus(args.corpus) if c in index]
    if len(ids) < 2:
        raise Refused(args.corpus, "fewer than 2 characters from the model's vocabulary")
    torch = import_torch()
    model = char_lm(torch, config["cell"], len(symbols), config["hidden"], config["layers"]).double()
    # PyTorch's names and gate orders: the weights load as they are.
    model.load_state_dict({name: torch.tensor(values.tolist(), dtype=torch.float64).reshape(shape)
                           for name, (values, shape) in weights.items()})
    model.eval()
    print(f"{bits_per_char(torch, model, ids):.6f} bits per character over {len(ids)} characters of {args.corpus} "
          f"(PyTorch {torch.__version__})")


def mt19937_64_state(seed):
    """std::mt19937_64(seed) written as libstdc++ writes it (312 words, then the position): the
    dropout generator's state a checkpoint carries."""
    mask, words = (1 << 64) - 1, [seed]
    for i in range(1, 312):
        words.append((6364136223846793005 * (words[-1] ^ (words[-1] >> 62)) + i) & mask)
    return " ".join(map(str, words)) + " 312"


SEQ, BATCH, VAL_FRACTION = 32, 8, 0.1  # export's fixed training configuration


def check_export(args):
    """Everything export needs, before torch: flags in range, an --out that is not the corpus and can be
    written, and a corpus xgrad-charlm would train on with this configuration (so it can --resume it)."""
    for flag, value, least, largest in (("--hidden", args.hidden, 1, MAX_SIZE), ("--steps", args.steps, 1, MAX_STEPS),
                                        ("--seed", args.seed, 0, U64_MAX)):
        if not least <= value <= largest:
            raise Refused(f"{flag} {value}", f"must be in [{least}, {largest}]")
    xxhash_module()  # the writer hashes every tensor: missing, it would fail after the training
    if same_file(args.out, args.corpus):
        raise Refused(f"--out {args.out}", f"it is the corpus {args.corpus}, which it would overwrite")
    if os.path.isdir(args.corpus) and os.path.realpath(os.path.dirname(os.path.abspath(args.out))).startswith(
            os.path.join(os.path.realpath(args.corpus), "")):
        raise Refused(f"--out {args.out}", f"is inside the corpus folder {args.corpus}, whose files are all read as text")
    text = load_corpus(args.corpus)
    symbols = sorted({ord(c) for c in text})
    if len(symbols) < 2:
        raise Refused(args.corpus, "it has a single distinct character: nothing to learn")
    val_size = math.floor(len(text) * VAL_FRACTION)
    if val_size < 2:
        raise Refused(args.corpus, f"{len(text)} characters leave {val_size} for the validation split (val_fraction "
                                   f"{VAL_FRACTION}); it needs at least 2")
    if (len(text) - val_size) // BATCH < SEQ + 1:
        raise Refused(args.corpus, f"the training part has {len(text) - val_size} characters, too few for one batch of "
                                   f"{BATCH} streams of {SEQ} + 1 characters")
    check_writable(args.out)
    return text, symbols


def export(args):
    text, symbols = check_export(args)
    torch = import_torch()
    torch.manual_seed(args.seed)
    index = {chr(c): i for i, c in enumerate(symbols)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    model = char_lm(torch, args.cell, len(symbols), args.hidden, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(args.steps):  # random windows: a different pipeline from xgrad-charlm's on purpose
        starts = torch.randint(0, len(ids) - SEQ - 1, (BATCH,))
        window = torch.stack([ids[s:s + SEQ + 1] for s in starts.tolist()], 1)
        logits, _ = model(window[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(symbols)), window[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    config = {"cell": args.cell, "hidden": args.hidden, "layers": 1, "seq": SEQ, "batch": BATCH, "dropout": 0.0, "lr": 3e-3,
              "clip": 5.0, "optimizer": "adam", "impl": "fused", "seed": args.seed, "val_fraction": VAL_FRACTION,
              "zoneout": 0.0, "variational_dropout": 0.0}
    tensors = {"model." + name: t for name, t in model.state_dict().items()}
    tensors["state.hidden"] = torch.zeros(1, BATCH, args.hidden)
    if args.cell == "lstm":
        tensors["state.cell"] = torch.zeros(1, BATCH, args.hidden)
    # train_chars: the training part as xgrad-charlm splits the text (the last val_fraction held out).
    train_chars = len(text) - math.floor(len(text) * VAL_FRACTION)
    # dropout_rng: xgrad::Generator's state, its engine's then its cached normal draw (none: 0, 0x0p+0).
    metadata = {"format": "xgrad-charlm", "format_version": str(FORMAT_VERSION), "config": json.dumps(config),
                "vocabulary": json.dumps(symbols), "step": "0", "optimizer.step": "0", "train_chars": str(train_chars),
                "data_position": "0", "dropout_rng": mt19937_64_state(args.seed) + " 0 0x0p+0"}
    blobs = {name: (t.detach().to(torch.float32).contiguous().numpy().tobytes(), list(t.shape)) for name, t in tensors.items()}
    write_atomic(args.out, safetensors_bytes(blobs, metadata))
    model.double().eval()
    print(f"wrote {args.out}: {args.cell} {args.hidden} trained {args.steps} steps in PyTorch {torch.__version__}; "
          f"{bits_per_char(torch, model, ids.tolist()):.6f} bits per character over {len(ids)} characters of {args.corpus}")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as every other failure (argparse's own prints the usage too)
        sys.exit(f"{PROGRAM}: {message} (--help lists the options)")


def main():
    parser = Parser(prog=PROGRAM, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    e = commands.add_parser("eval", help="bits per character of an xgrad-charlm checkpoint, in PyTorch")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--corpus", required=True)
    x = commands.add_parser("export", help="train in PyTorch, write an xgrad-charlm checkpoint")
    x.add_argument("--corpus", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--cell", choices=list(CELL_GATES), default="gru")
    x.add_argument("--hidden", type=int, default=32)
    x.add_argument("--steps", type=int, default=300)
    x.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        evaluate(args) if args.command == "eval" else export(args)
    except Refused as e:
        sys.exit(f"{PROGRAM}: {e}")
    except OSError as e:  # a file that cannot be opened or read: its name and the reason
        sys.exit(f"{PROGRAM}: {e.filename}: {e.strerror}")
    except MemoryError:
        sys.exit(f"{PROGRAM}: out of memory")
    except Exception as e:  # a case the checks above missed: still one line, never a traceback
        sys.exit(f"{PROGRAM}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
