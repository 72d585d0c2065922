// Encodes fixed strings with the npm package gpt-3-encoder (GPT-2's own vocabulary and its
// original regex, MIT) and writes tests/data/gpt2_tokens.json for the C++ tokenizer test.
//   npm install --prefix build/npm gpt-3-encoder@1.1.4
//   NODE_PATH=build/npm/node_modules node tools/gen_gpt2_tokens.js
const fs = require("fs");
const path = require("path");
const { encode } = require("gpt-3-encoder");

const texts = [
  "Hello world",
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "I'm sure you'll agree: they've 2 dogs & 13 cats!!  Isn't it?\n\n\tIndented line   ",
  "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 \u201cquoted\u201d \u00a3100 \u00bd",
  "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002 \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
  "emoji \ud83d\ude00\ud83d\udc4d and math \u03b1+\u03b2=\u03b3",
];
const cases = texts.map((text) => ({ text, tokens: encode(text) }));
const out = path.join(__dirname, "..", "tests", "data", "gpt2_tokens.json");
fs.writeFileSync(out, JSON.stringify({ source: "npm gpt-3-encoder@1.1.4", cases }, null, 1) + "\n");
console.log(`wrote ${cases.length} cases to ${out}`);
