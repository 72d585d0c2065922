#!/usr/bin/env python3
"""Writes tests/data/llama3_pretokens.json: texts and how Llama 3's pre-tokenizer pattern splits
them, as the `regex` module (Debian's python3-regex, which knows \\p{L} and \\p{N}) matches it.
The pattern is the one in Llama 3's tokenizer.json (a Split pre-tokenizer, behaviour Isolated:
every match is a piece). tests/unit/test_tokenizer.cpp checks tessera's scanner against it.

  apt-get install python3-regex
  /usr/bin/python3 tools/gen_llama3_pretokens.py
"""
import json
import os

import regex

PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CRAFTED = [
    "Hello world, it's  a 123 test!!  \n\n  Mr. Darcy's\tx",
    "WE'LL DON'T I'M You'Re they'VE",
    "'sa 'hello ''s",
    "1234567 12 3.14159 +42 x2024y",
    "end   ",
    "   leading and trailing   \n",
    "line one\r\nline two\n\n\nthree \n \n four",
    "tabs\tand\u00a0no-break\u3000ideographic space",
    "caf\u00e9 na\u00efve \u00c6sir \u0394\u03b5\u03bb\u03c4\u03b1 \u4e2d\u6587\u5b57 \u0661\u0662\u0663\u0664",
    "emoji \U0001F600\U0001F600 ok!?\n\nnext",
    "$hello #tag @user (paren) [bracket] {brace}",
    "a.b,c;d:e!f?g",
    "...\n\n",
    " !!!\r\n",
    "\n",
    "x \n y",
    "Ⅻ roman ½ half ²",
]


def main():
    with open(os.path.join(ROOT, "tests/data/text/persuasion-end.txt"), encoding="utf-8") as f:
        austen = f.read()[:4000]
    cases = [{"text": t, "pieces": regex.findall(PATTERN, t)} for t in CRAFTED + [austen]]
    for c in cases:
        assert "".join(c["pieces"]) == c["text"], c["text"]
    out = os.path.join(ROOT, "tests/data/llama3_pretokens.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"pattern": PATTERN, "generated_by": "tools/gen_llama3_pretokens.py (python3-regex " +
                   regex.__version__ + ")", "cases": cases}, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print("wrote", out, len(cases), "cases")


if __name__ == "__main__":
    main()
