"""Byte-level BPE in the GPT-2 format (encoder.json + vocab.bpe), trainer and encoder.

The pre-tokenizer is the GPT-2 pattern
  's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
written out as a scanner, the same algorithm as src/model/tokenizer.cpp, so both split text alike.
"""
import collections
import json


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _cls(c):
    if c.isspace():
        return "S"
    if c.isalpha():
        return "L"
    if c.isnumeric():
        return "N"
    return "O"


CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def pretokenize(text):
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        hit = next((s for s in CONTRACTIONS if text.startswith(s, i)), None)
        if hit:
            out.append(hit)
            i += len(hit)
            continue
        j = i + 1 if (c == " " and i + 1 < n and _cls(text[i + 1]) != "S") else i
        k = _cls(text[j])
        if k != "S":
            e = j + 1
            while e < n and _cls(text[e]) == k:
                e += 1
            out.append(text[i:e])
            i = e
            continue
        e = i
        while e < n and _cls(text[e]) == "S":
            e += 1
        if e < n and e - i > 1:
            e -= 1  # leave one space to prefix the next word
        out.append(text[i:e])
        i = e
    return out


def train(text, vocab_size, special="<|endoftext|>"):
    b2u = bytes_to_unicode()
    words = collections.Counter(pretokenize(text))
    symbols = [b2u[b] for b in range(256)]
    seqs = [[b2u[b] for b in w.encode("utf-8")] for w in words]
    freqs = [words[w] for w in words]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for wi, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += freqs[wi]
            where[(a, b)].add(wi)
    merges = []
    while len(symbols) + len(merges) < vocab_size - 1 and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pairs[best] < 2:
            break
        merges.append(best)
        new = best[0] + best[1]
        for wi in list(where[best]):
            s, f = seqs[wi], freqs[wi]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] -= f
                if pairs[(a, b)] <= 0:
                    del pairs[(a, b)]
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[wi] = out
            for a, b in zip(out, out[1:]):
                pairs[(a, b)] += f
                where[(a, b)].add(wi)
        where.pop(best, None)
    encoder = {s: i for i, s in enumerate(symbols)}
    for a, b in merges:
        encoder[a + b] = len(encoder)
    encoder[special] = len(encoder)
    return encoder, merges


class Tokenizer:
    def __init__(self, encoder, merges):
        self.encoder, self.merges = encoder, merges
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()

    def _bpe(self, word):
        s = [self.b2u[b] for b in word.encode("utf-8")]
        while len(s) > 1:
            ranked = [(self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(s, s[1:]))]
            r, i = min(ranked)
            if r == 1 << 30:
                break
            s = s[:i] + [s[i] + s[i + 1]] + s[i + 2:]
        return [self.encoder[x] for x in s]

    def encode(self, text):
        return [t for w in pretokenize(text) for t in self._bpe(w)]

    def decode(self, ids):
        u2b = {v: k for k, v in self.b2u.items()}
        inv = {v: k for k, v in self.encoder.items()}
        return bytes(u2b[c] for i in ids for c in inv[i]).decode("utf-8", errors="replace")


def save(encoder, merges, encoder_path, merges_path):
    with open(encoder_path, "w") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(merges_path, "w") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def load(encoder_path, merges_path):
    """The tokenizer save() wrote."""
    with open(encoder_path) as f:
        encoder = json.load(f)
    with open(merges_path) as f:
        merges = [tuple(line.rstrip("\n").split(" ")) for line in f.readlines()[1:] if line.strip()]
    return Tokenizer(encoder, merges)
