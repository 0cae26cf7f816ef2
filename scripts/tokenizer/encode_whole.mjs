// encode_whole.mjs: the reference for `nupipe data prepare --tokenizer gpt2`: a whole text
// file encoded in one call of js-tiktoken's gpt2 encoding, the ids written as uint16 LE.
// Usage: node encode_whole.mjs TEXT OUT.u16   (the tests compare it with the token file)
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Tiktoken } = require("js-tiktoken/lite");  // the CommonJS build, not the bridge's
const gpt2 = require("js-tiktoken/ranks/gpt2");
const [text, out] = process.argv.slice(2);
const enc = new Tiktoken(gpt2.default ?? gpt2);
const ids = enc.encode(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
  .decode(readFileSync(text)), "all");
const buf = Buffer.alloc(2 * ids.length);
ids.forEach((id, i) => buf.writeUInt16LE(id, 2 * i));
writeFileSync(out, buf);
