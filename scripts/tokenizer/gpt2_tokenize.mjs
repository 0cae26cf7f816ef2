// gpt2_tokenize.mjs: the GPT-2 BPE (js-tiktoken's "gpt2" encoding) as a child process of
// nupipe: length-prefixed requests on stdin, answers on stdout (runtime/data/tokenizer.cpp).
//
// Protocol, all integers little-endian:
//   on start   -> u32 n, n bytes of JSON {"library", "version", "encoding", "vocab_size"}
//   'E' u32 n, n bytes of UTF-8 text   -> u32 count, count x u16 token ids
//   'D' u32 n, n/2 x u16 token ids     -> u32 n, n bytes of UTF-8 text
// "<|endoftext|>" in the text is the special token 50256, as tiktoken's
// encode(text, allowed_special="all"). Exit codes: 0 at end of input, 10 js-tiktoken not
// installed, 11 a malformed request.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
let Tiktoken, gpt2, version;
try {
  ({ Tiktoken } = await import("js-tiktoken/lite"));
  gpt2 = (await import("js-tiktoken/ranks/gpt2")).default;
  version = JSON.parse(
    readFileSync(join(here, "node_modules", "js-tiktoken", "package.json"), "utf8")).version;
} catch (e) {
  process.stderr.write(`js-tiktoken is not installed in ${here}/node_modules (${e.message})\n`);
  process.exit(10);
}
const enc = new Tiktoken(gpt2);

function frame(payload) {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(payload.length, 0);
  return Buffer.concat([head, payload]);
}

async function send(buf) {
  if (!process.stdout.write(buf)) {
    await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
}

await send(frame(Buffer.from(JSON.stringify({
  library: "js-tiktoken", version, encoding: "gpt2", vocab_size: gpt2.explicit_n_vocab,
}))));

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });  // a BOM is text too
let pending = Buffer.alloc(0);
for await (const data of process.stdin) {
  pending = pending.length ? Buffer.concat([pending, data]) : data;
  while (pending.length >= 5) {
    const op = pending[0];
    const n = pending.readUInt32LE(1);
    if (pending.length < 5 + n) break;
    const body = pending.subarray(5, 5 + n);
    if (op === 0x45) {  // 'E'
      const ids = enc.encode(decoder.decode(body), "all");
      const out = Buffer.alloc(4 + 2 * ids.length);
      out.writeUInt32LE(ids.length, 0);
      for (let i = 0; i < ids.length; ++i) out.writeUInt16LE(ids[i], 4 + 2 * i);
      await send(out);
    } else if (op === 0x44 && n % 2 === 0) {  // 'D'
      const ids = new Array(n / 2);
      for (let i = 0; i < ids.length; ++i) ids[i] = body.readUInt16LE(2 * i);
      await send(frame(Buffer.from(enc.decode(ids), "utf8")));
    } else {
      process.stderr.write(`malformed request (op ${op}, ${n} bytes)\n`);
      process.exit(11);
    }
    pending = pending.subarray(5 + n);
  }
}
