#!/usr/bin/env python3
"""Splits BERT's A100 pass time into a cost per sequence and a fixed cost per pass
(docs/validation.md, "BERT on A100").

For bert-base-squad and bert-large-squad at 128 and 384 tokens, fits latency = fixed + batch x
per_sequence by least squares over batches 1, 2, 4 and 8: to the TensorRT demo's published FP16
and INT8 averages (A100 40 GB; docs/hardware-sources.md [V7]) and to tessera's timing-only
prediction for the same passes (a100, fp16).

Usage: tools/bert_batch_fit.py [build-dir]   (a few seconds)
"""

import subprocess
import sys

BATCHES = [1, 2, 4, 8]

# NVIDIA/TensorRT demo/BERT/README.md at commit 768d994b7305b69eb5db2397337ae96e36586b41,
# "Inference performance: NVIDIA A100 (40GB)", average latency in ms at batches 1, 2, 4, 8.
PUBLISHED = {
    ("bert-base-squad", 128): {"fp16": [0.64, 0.75, 0.95, 1.36], "int8": [0.55, 0.61, 0.76, 0.96]},
    ("bert-base-squad", 384): {"fp16": [1.28, 1.59, 2.25, 3.48], "int8": [1.14, 1.33, 1.69, 2.24]},
    ("bert-large-squad", 128): {"fp16": [1.67, 1.88, 2.71, 4.38], "int8": [1.25, 1.44, 2.0, 2.73]},
    ("bert-large-squad", 384): {"fp16": [3.06, 4.08, 5.85, 11.41], "int8": [2.84, 3.05, 4.36, 7.22]},
}


def fit(ys):
    """(intercept, slope) of the least-squares line through (BATCHES, ys)."""
    n = len(BATCHES)
    mx, my = sum(BATCHES) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(BATCHES, ys)) / sum((x - mx) ** 2 for x in BATCHES)
    return my - slope * mx, slope


def tessera_ms(build, model, tokens, batch):
    out = subprocess.run(
        [f"{build}/tessera", "run", "-q", "-m", model, "--arch", "a100", "--no-numerics", "--dtype", "fp16",
         "--prompt-tokens", str(tokens), "--batch", str(batch)],
        check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        words = line.split()
        if words[:2] == ["one", "pass"]:
            return float(words[2])
    raise SystemExit(f"no 'one pass' line in tessera's output for {model} at {tokens} tokens, batch {batch}")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    print("| model | tokens | per sequence ms: FP16 / INT8 / tessera | fixed ms: FP16 / INT8 / tessera |")
    print("|---|---|---|---|")
    for (model, tokens), published in PUBLISHED.items():
        predicted = [tessera_ms(build, model, tokens, b) for b in BATCHES]
        lines = [fit(published["fp16"]), fit(published["int8"]), fit(predicted)]
        print("| {} | {} | {} | {} |".format(model, tokens, " / ".join(f"{s:.3f}" for _, s in lines),
                                           " / ".join(f"{c:.2f}" for c, _ in lines)))


if __name__ == "__main__":
    main()
