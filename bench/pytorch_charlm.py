#!/usr/bin/python3
"""The README's char-LM quality configuration in PyTorch, with xgrad-charlm's exact data pipeline
(same corpus reading, vocabulary, split, contiguous streams with the state carried, streamed
validation), for a same-machine comparison of validation bits per character and characters/s.

    /usr/bin/python3 bench/pytorch_charlm.py [--steps 3000] [--corpus /usr/share/games/fortunes]

Needs Debian's python3-torch (an optional dependency of the benchmarks only).
"""
import argparse
import math
import os
import time

import torch


def load_corpus(path):
    if os.path.isfile(path):
        return open(path, "rb").read().decode("utf-8")
    text = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        data = open(full, "rb").read()
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\0" not in decoded:
            text.append(decoded)
    return "".join(text)


class CharLM(torch.nn.Module):
    def __init__(self, vocab, hidden, layers):
        super().__init__()
        self.vocab = vocab
        self.rnn = torch.nn.RNN(vocab, hidden, num_layers=layers)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, h):
        out, h = self.rnn(torch.nn.functional.one_hot(ids, self.vocab).float(), h)
        return self.head(out), h


def bits_per_char(model, ids):
    streams = max(1, min(64, len(ids) // 1024))
    bounds = [0]
    for b in range(streams):
        bounds.append(bounds[-1] + len(ids) // streams + (1 if b < len(ids) % streams else 0))
    longest = max(bounds[b + 1] - bounds[b] - 1 for b in range(streams))
    h = torch.zeros(model.rnn.num_layers, streams, model.rnn.hidden_size)
    nats = 0.0
    with torch.no_grad():
        for offset in range(0, longest, 256):
            steps = min(256, longest - offset)
            inputs = torch.zeros(steps, streams, dtype=torch.long)
            targets = torch.zeros(steps, streams, dtype=torch.long)
            mask = torch.zeros(steps, streams)
            for b in range(streams):
                n = max(0, min(steps, bounds[b + 1] - bounds[b] - 1 - offset))
                seg = ids[bounds[b] + offset: bounds[b] + offset + n + 1]
                inputs[:n, b] = seg[:n]
                targets[:n, b] = seg[1:n + 1]
                mask[:n, b] = 1
            # Carry each stream's state only over its valid steps (as packed sequences would).
            for t in range(steps):
                logits, h_new = model(inputs[t:t + 1], h)
                m = mask[t].view(1, streams, 1)
                h = m * h_new + (1 - m) * h
                nll = torch.nn.functional.cross_entropy(logits[0], targets[t], reduction="none")
                nats += float((nll * mask[t]).sum())
    return nats / math.log(2) / (len(ids) - streams)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="/usr/share/games/fortunes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    text = load_corpus(args.corpus)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    val = int(len(ids) * 0.1)
    train, valid = ids[:len(ids) - val], ids[len(ids) - val:]
    length = len(train) // args.batch
    streams = train[:length * args.batch].view(args.batch, length).t()  # (length, batch)
    model = CharLM(len(vocab), args.hidden, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    h = torch.zeros(1, args.batch, args.hidden)
    pos = 0
    start = time.time()
    for step in range(1, args.steps + 1):
        x, y = streams[pos:pos + args.seq], streams[pos + 1:pos + args.seq + 1]
        logits, h_n = model(x, h)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        h = h_n.detach()
        pos += args.seq
        if pos + args.seq + 1 > length:
            pos = 0
            h = torch.zeros_like(h)
    seconds = time.time() - start
    print(f"pytorch {torch.__version__}: {args.steps} steps in {seconds:.1f} s, "
          f"{args.steps * args.batch * args.seq / seconds:.0f} characters/s (training only), last loss {loss.item():.4f}")
    print(f"validation: {bits_per_char(model, valid):.4f} bits per character")


if __name__ == "__main__":
    main()
