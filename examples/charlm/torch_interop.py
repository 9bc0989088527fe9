#!/usr/bin/python3
"""xgrad-charlm checkpoints and PyTorch, both ways (an optional tool: Debian's python3-torch).

  torch_interop.py eval --checkpoint model.safetensors --corpus text.txt
      loads an xgrad-charlm checkpoint into torch.nn.RNN/LSTM/GRU + Linear and prints the bits per
      character of the text, computed as `xgrad-charlm eval` does (the same streams, in float64);
  torch_interop.py export --corpus text.txt --out model.safetensors [--cell gru --hidden 32 --steps 300]
      trains a small model in PyTorch and writes it as an xgrad-charlm checkpoint, which
      `xgrad-charlm sample` and `eval` read; prints the bits per character PyTorch computes for it.

Checkpoints are safetensors files: parameters "model.rnn.*" (PyTorch's names) and "model.head.*",
the carried state "state.hidden" (and "state.cell"), and metadata with the configuration (JSON),
the vocabulary (sorted code points, JSON) and the step counters.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    metadata = header.pop("__metadata__", {})
    body = data[8 + size:]
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            sys.exit(f"torch_interop.py: {path}: tensor {name} is {entry['dtype']}, expected F32")
        begin, end = entry["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32).reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, t in tensors.items():
        blob = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class CharLM(torch.nn.Module):
    """xgrad-charlm's model: one-hot characters -> RNN/LSTM/GRU -> Linear."""

    def __init__(self, cell, vocabulary, hidden, layers):
        super().__init__()
        kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.vocabulary = vocabulary
        self.rnn = kind(vocabulary, hidden, layers)
        self.head = torch.nn.Linear(hidden, vocabulary)

    def forward(self, ids, state=None):  # ids (T, B) -> logits (T, B, V)
        x = torch.nn.functional.one_hot(ids, self.vocabulary).to(self.head.weight.dtype)
        output, state = self.rnn(x, state)
        return self.head(output), state


def load_text(path):
    """A UTF-8 file (a folder, which xgrad-charlm also reads, is not handled here)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def bits_per_char(model, ids):
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
    tensors, metadata = read_safetensors(args.checkpoint)
    if metadata.get("format") != "xgrad-charlm":
        sys.exit(f"torch_interop.py: {args.checkpoint}: not an xgrad-charlm checkpoint")
    config = json.loads(metadata["config"])
    if config.get("zoneout", 0) or config.get("variational_dropout", 0):
        sys.exit(f"torch_interop.py: {args.checkpoint}: zoneout and variational dropout have no torch.nn counterpart")
    symbols = json.loads(metadata["vocabulary"])
    model = CharLM(config["cell"], len(symbols), config["hidden"], config["layers"]).double()
    weights = {name[len("model."):]: t.double() for name, t in tensors.items() if name.startswith("model.")}
    model.load_state_dict(weights)  # PyTorch's names and gate orders: they load as they are
    model.eval()
    index = {chr(c): i for i, c in enumerate(symbols)}
    text = load_text(args.corpus)
    ids = [index[c] for c in text if c in index]
    print(f"{bits_per_char(model, ids):.6f} bits per character over {len(ids)} characters of {args.corpus} (PyTorch {torch.__version__})")


def mt19937_64_state(seed):
    """std::mt19937_64(seed) written as libstdc++ writes it (312 words, then the position): the
    dropout generator's state a checkpoint carries."""
    mask, words = (1 << 64) - 1, [seed]
    for i in range(1, 312):
        words.append((6364136223846793005 * (words[-1] ^ (words[-1] >> 62)) + i) & mask)
    return " ".join(map(str, words)) + " 312"


def export(args):
    torch.manual_seed(args.seed)
    text = load_text(args.corpus)
    symbols = sorted({ord(c) for c in text})
    index = {chr(c): i for i, c in enumerate(symbols)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    seq, batch, val_fraction = 32, 8, 0.1
    if len(ids) < seq + 2:
        raise ValueError(f"{args.corpus}: {len(ids)} characters, fewer than a window of {seq + 2}")
    model = CharLM(args.cell, len(symbols), args.hidden, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(args.steps):  # random windows: a different pipeline from xgrad-charlm's on purpose
        starts = torch.randint(0, len(ids) - seq - 1, (batch,))
        window = torch.stack([ids[s:s + seq + 1] for s in starts.tolist()], 1)
        logits, _ = model(window[:-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(symbols)), window[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    config = {"cell": args.cell, "hidden": args.hidden, "layers": 1, "seq": seq, "batch": batch, "dropout": 0.0, "lr": 3e-3,
              "clip": 5.0, "optimizer": "adam", "impl": "fused", "seed": args.seed, "val_fraction": val_fraction, "zoneout": 0.0,
              "variational_dropout": 0.0}
    tensors = {"model." + name: t for name, t in model.state_dict().items()}
    tensors["state.hidden"] = torch.zeros(1, batch, args.hidden)
    if args.cell == "lstm":
        tensors["state.cell"] = torch.zeros(1, batch, args.hidden)
    # train_chars: the training part as xgrad-charlm splits the text (the last val_fraction held out).
    train_chars = len(text) - math.floor(len(text) * val_fraction)
    # dropout_rng: xgrad::Generator's state, its engine's then its cached normal draw (none: 0, 0x0p+0).
    metadata = {"format": "xgrad-charlm", "format_version": "1", "config": json.dumps(config), "vocabulary": json.dumps(symbols),
                "step": "0", "optimizer.step": "0", "train_chars": str(train_chars), "data_position": "0",
                "dropout_rng": mt19937_64_state(args.seed) + " 0 0x0p+0"}
    write_safetensors(args.out, tensors, metadata)
    model.double().eval()
    print(f"wrote {args.out}: {args.cell} {args.hidden} trained {args.steps} steps in PyTorch {torch.__version__}; "
          f"{bits_per_char(model, ids.tolist()):.6f} bits per character over {len(ids)} characters of {args.corpus}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    e = commands.add_parser("eval", help="bits per character of an xgrad-charlm checkpoint, in PyTorch")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--corpus", required=True)
    x = commands.add_parser("export", help="train in PyTorch, write an xgrad-charlm checkpoint")
    x.add_argument("--corpus", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="gru")
    x.add_argument("--hidden", type=int, default=32)
    x.add_argument("--steps", type=int, default=300)
    x.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        if args.command == "eval":
            evaluate(args)
        else:
            export(args)
    except (OSError, ValueError, KeyError, struct.error, json.JSONDecodeError, RuntimeError) as e:
        sys.exit(f"torch_interop.py {args.command}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
