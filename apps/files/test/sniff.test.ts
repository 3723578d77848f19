import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { fileTypeFromBuffer } from 'file-type';
import { decodeSample, sampleEncoding } from '../src/processors/dialect.ts';
import { sniffType } from '../src/upload.ts';

/** Bytes the sniffer reads of a file (upload.ts HEAD_BYTES). */
const HEAD = 4_100;

/** Binary by the rule before bytes were checked first: decode the sample, then look for control characters. */
function decodedBinary(head: Uint8Array): boolean {
  const { encoding, text } = decodeSample(head, head.length < HEAD);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what tells binary apart
  const binary = encoding === 'windows-1252' ? /[\u0000-\u0008\u000b\u000e-\u001a\u001c-\u001f]/ : /\u0000/;
  return binary.test(text);
}

/** A sample made of text, line feeds and a few stray bytes, so every branch of the rule is reached. */
function mixed(n: number, seed: Buffer): Buffer {
  const text = Buffer.from('name,size\né,1\n€ 2;3\r\n');
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    const r = seed[i % seed.length]!;
    out[i] = r < 8 ? r * 3 : r < 16 ? 0x0a : text[(i + r) % text.length]!;
  }
  return out;
}

describe('sniffType: text or binary', () => {
  it('decides as decoding the sample would, on random and mixed samples', async () => {
    const samples: Buffer[] = [];
    for (const n of [1, 2, 3, 5, 64, 400, 4_099, HEAD]) {
      for (let k = 0; k < 12; k++) samples.push(randomBytes(n), mixed(n, randomBytes(64)));
    }
    let binary = 0;
    for (const head of samples) {
      if (await fileTypeFromBuffer(head)) continue;
      const got = (await sniffType(head)) === 'application/octet-stream';
      assert.equal(
        got,
        decodedBinary(head),
        `sample ${head.toString('hex').slice(0, 80)}… (${head.length} B)`,
      );
      if (got) binary++;
    }
    assert.ok(binary > 0 && binary < samples.length, 'both outcomes were reached');
  });

  it('reads only up to the last line feed of a cut sample, as its decoded text does', async () => {
    const lines = Buffer.from('a,b\n1,2\n'.repeat(600)).subarray(0, HEAD - 2);
    const nulAfter = Buffer.concat([lines, Buffer.from([0x00, 0x41])]);
    assert.equal(nulAfter.length, HEAD);
    assert.equal(await sniffType(nulAfter), 'text/csv', 'a zero byte after the last line feed is cut off');
    const nulBefore = Buffer.from(nulAfter);
    nulBefore[10] = 0;
    assert.equal(await sniffType(nulBefore), 'application/octet-stream');
    // The whole file (shorter than the head): every byte counts.
    assert.equal(await sniffType(nulAfter.subarray(0, 200)), 'text/csv');
    assert.equal(
      await sniffType(Buffer.concat([nulAfter.subarray(0, 200), Buffer.from([0])])),
      'application/octet-stream',
    );
  });

  it('takes UTF-8 cut inside a character at the end as UTF-8, and a fault before it as not', () => {
    const euro = Buffer.from('€'); // e2 82 ac
    const text = Buffer.concat([Buffer.from('x'.repeat(HEAD - 2)), euro]).subarray(0, HEAD);
    assert.equal(sampleEncoding(text).encoding, 'utf-8', 'the last character cut after 2 of its 3 bytes');
    const faulty = Buffer.from(text);
    faulty[5] = 0xff;
    assert.equal(sampleEncoding(faulty).encoding, 'windows-1252');
    const badTail = Buffer.concat([Buffer.from('x'.repeat(10)), Buffer.from([0xe2, 0x41])]);
    assert.equal(sampleEncoding(badTail).encoding, 'windows-1252', 'a lead byte followed by no continuation');
    assert.equal(
      sampleEncoding(Buffer.from([0xf0, 0x9f])).encoding,
      'utf-8',
      'a sample of a cut emoji alone',
    );
    assert.equal(sampleEncoding(Buffer.from([0xef, 0xbb, 0xbf, 0x41])).bom, true);
  });
});
