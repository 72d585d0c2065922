"""The Python module (`import tessera`) against the library it binds: run with values on the host
and on a wafer gives the same greedy tokens and logits, an ONNX export PyTorch's tokens, the report
is the CLI's JSON, compare gives a row per machine, eval a finite perplexity, train_step a training
step, train a falling loss, and bad input raises tessera.Error. Run by ctest with /usr/bin/python3 and PYTHONPATH=build/python."""
import json
import math
import os
import sys
import tempfile

import numpy as np

import tessera

ROOT = os.environ["TESSERA_SOURCE_DIR"]


def check(condition, what):
    if not condition:
        print("FAILED:", what)
        sys.exit(1)


host = tessera.run(arch="host", max_new_tokens=6, temperature=0.0)
wafer = tessera.run(arch="wse2", max_new_tokens=6, temperature=0.0)
check(host["generated_ids"] == wafer["generated_ids"], "the wafer's greedy tokens are the host's")
check(len(host["generated_ids"]) == 6, "six tokens generated")
check(wafer["logits"].shape == (6, 2048) and wafer["logits"].dtype == np.float32, "logits [generated, vocab] float32")
check(list(wafer["logits"].argmax(axis=1)) == wafer["generated_ids"], "greedy tokens are the logits' argmax")
check(np.max(np.abs(wafer["logits"] - host["logits"])) < 1e-5 * np.max(np.abs(host["logits"])),
      "the wafer's logits are the host's within fp32 tolerance")
check(host["report"] is None and wafer["report"]["arch"] == "wse2", "a machine's run has its report")
check(wafer["report"]["tokens"]["generated_ids"] == wafer["generated_ids"], "the report carries the token ids")
load = wafer["report"]["link_load"]  # blocks of block x block routers on a large grid
check(wafer["link_load"]["east"].shape == (load["height"], load["width"]) and wafer["link_load"]["east"].sum() > 0,
      "link loads as [height, width] arrays")
check(wafer["text"].startswith("It is a truth universally acknowledged, that"), "the text starts with the prompt")

exported = json.load(open(os.path.join(ROOT, "tests/data/onnx/expected.json")))
onnx = tessera.run(model=os.path.join(ROOT, "tests/data/onnx/gpt2-tiny.onnx"), tokenizer=os.path.join(ROOT, "models/default"),
                   arch="gc200", prompt=exported["prompt"], max_new_tokens=12, temperature=0.0)
check(onnx["generated_ids"] == exported["greedy"], "a torch.onnx export runs with PyTorch's tokens")

timing = tessera.run(model="llama3-8b", arch="wse3", values=False, prompt_tokens=64, max_new_tokens=8, dtype="fp16",
                     fidelity="analytic")
check(timing["report"]["fabric_model"] == "analytic" and timing["generated_ids"] == [], "timing-only, analytic tier")
check(timing["report"]["decode_tokens_per_s_per_user"] > 1000, "llama3-8b decodes on a wse3")

rows = tessera.compare(model="llama3-8b", archs=["wse3", "h100"], prompt_tokens=64, max_new_tokens=8, dtype="fp16")
check([r["arch"] for r in rows] == ["wse3", "h100"], "a row per machine")
moe = {routing: tessera.compare(model="mixtral-8x7b", archs=["2xh100", "4xwse3"], dtype="fp16", routing=routing)
       for routing in ("uniform", "balanced")}
check(moe["uniform"][1]["fits"] and moe["uniform"][1]["tokens_per_s_per_user"] > 0, "wafers run a mixture of experts")
check(moe["uniform"][1]["tokens_per_s_per_user"] == moe["balanced"][1]["tokens_per_s_per_user"],
      "every core of a wafer region holds every expert: routing does not change its time")
check(moe["balanced"][0]["tokens_per_s_per_user"] > moe["uniform"][0]["tokens_per_s_per_user"],
      "balanced routing decodes faster than uniform on two GPUs")
ep = tessera.compare(model="mixtral-8x7b", archs=["8xh100"], batches=[64], dtype="fp16", expert_parallel=8)
check(ep[0]["fits"] and ep[0]["mapping"] == "expert 8", "experts over 8 GPUs")

product = tessera.gemm(48, 64, 40, archs=["mesh-32x32", "a100"], cores=8)
mesh, gpu = product["machines"]
check(mesh["chosen"] in ("summa", "cannon", "meshgemm", "meshgemv") and all(a["max_abs_error"] < 1e-4 for a in mesh["algorithms"]),
      "a matmul alone on a mesh: each algorithm's values match the host's product")
check(gpu["chosen"] == "tiled" and gpu["algorithms"][0]["seconds"] > 0, "and on a GPU, timed")

ppl = tessera.eval(text_path=os.path.join(ROOT, "tests/data/text/persuasion-end.txt"), window=128)
check(math.isfinite(ppl["perplexity"]) and 1 < ppl["perplexity"] < 2048 and ppl["tokens_scored"] > 1000,
      "perplexity of the default model on Austen")

step = tessera.train_step("gpt2-xl", "16xwse2", seq=1024)
check(step["step_s"] > 0 and 0 < step["mfu"] <= 1, "a training step's figures")
fused = tessera.train_step("megatron-22b", "8xa100", global_batch=8)
unfused = tessera.train_step("megatron-22b", "8xa100", global_batch=8, attention="unfused")
check(unfused["step_s"] > fused["step_s"], "unfused attention moves the scores through HBM")

trained = tessera.train(text_path=os.path.join(ROOT, "tests/data/text/persuasion-end.txt"), steps=6, batch=2,
                        seq=32, warmup=2, eval_every=3)
check(trained["loss"].shape == (6,) and all(math.isfinite(x) for x in trained["loss"]), "a loss per step")
check(trained["loss"][-1] < trained["loss"][0], "the loss falls")
check(sorted(trained["held_out"]) == [3, 6] and trained["final_held_out"] == trained["held_out"][6],
      "held-out losses by step")

out = os.path.join(tempfile.mkdtemp(), "sweep")
swept = tessera.sweep(os.path.join(ROOT, "tests/data/sweeps/tiny.yaml"), out=out, threads=2)
check(len(swept["points"]) == 48 and swept["resumed"] == 0, "a sweep's points")
front = [p for p in swept["points"] if p["on_front"]]
check(front and all(p["workloads"]["decode"]["fits"] for p in front), "its front fits")
check(tessera.sweep(os.path.join(ROOT, "tests/data/sweeps/tiny.yaml"), out=out)["resumed"] == 48, "a rerun resumes")

bert_dir = os.path.join(ROOT, "tests/data/hf/bert")
with open(os.path.join(bert_dir, "expected.json")) as f:
    bert_expected = json.load(f)["prompts"][1]
bert = tessera.run(model=bert_dir, arch="wse2", prompt=bert_expected["prompt"])
check([m["ids"] for m in bert["masks"]] == bert_expected["top5"] and bert["generated_ids"] == [],
      "an encoder fills its masks with PyTorch's tokens on a wafer")

try:
    tessera.run(arch="wse9")
    check(False, "an unknown arch raises")
except tessera.Error as e:
    check("unknown arch 'wse9'" in str(e), "the error names the arch: " + str(e))
print("python module: ok")
