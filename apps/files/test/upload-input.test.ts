// Hostile or broken upload input: multipart bodies without a usable boundary or that do not parse answer 400
// ERR_WEFT_FILES_MULTIPART (never 500) and keep nothing; file names lose control and bidi-control characters and
// are cut between grapheme clusters, never inside an emoji or a combining sequence.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sanitizeName } from '../src/upload.ts';
import { filesUnder, type Running, startService } from './helpers.ts';

const graphemes = (s: string) =>
  [...new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(s)].map((g) => g.segment);

/** `cut` is `whole` (in NFC, as names are kept) cut after some of its grapheme clusters, each kept whole, in order. */
function assertWholeClusters(cut: string, whole: string): void {
  assert.ok(cut.isWellFormed(), 'no lone surrogate');
  const kept = graphemes(cut);
  assert.deepEqual(kept, graphemes(whole.normalize('NFC')).slice(0, kept.length));
}

describe('file names', () => {
  it('drop bidi controls, control characters and separators', () => {
    assert.equal(sanitizeName('invoice\u202Efdp.exe'), 'invoicefdp.exe');
    const bidi = ['\u061C', '\u200E', '\u200F', '\u202A', '\u202B', '\u202C', '\u202D', '\u202E'];
    bidi.push('\u2066', '\u2067', '\u2068', '\u2069');
    assert.equal(sanitizeName(`a${bidi.join('')}b.txt`), 'ab.txt');
    assert.equal(
      sanitizeName('t\u0000a\u0009b\u000ac\u001bd\u007fe\u0085f\u009fg\u2028h\u2029.csv'),
      'tabcdefgh.csv',
    );
    assert.equal(sanitizeName('\u202E\u200F'), 'upload', 'nothing usable left');
    assert.equal(sanitizeName('../\u202E/x.png'), 'x.png');
    // What stays: letters of right-to-left scripts, emoji with their joiners, combining marks.
    assert.equal(sanitizeName('تقرير.pdf'), 'تقرير.pdf');
    assert.equal(sanitizeName('👨‍👩‍👧.png'), '👨‍👩‍👧.png');
  });

  it('are cut on grapheme boundaries, keeping the extension', () => {
    const family = '👨‍👩‍👧‍👦'; // 11 UTF-16 units
    // The 200-unit cut (195 before '.jpeg') falls inside the emoji: it goes whole.
    const input = `${'a'.repeat(190)}${family}${'b'.repeat(20)}.jpeg`;
    const name = sanitizeName(input);
    assert.equal(name, `${'a'.repeat(190)}.jpeg`);
    // Flags are two regional indicators (4 units); a cut mid-flag would leave a different flag or half of one.
    const flags = '🇫🇷🇩🇪'.repeat(30);
    const cutFlags = sanitizeName(`x${flags}`);
    assert.ok(cutFlags.length <= 200 && cutFlags.length > 190);
    assertWholeClusters(cutFlags, `x${flags}`);
    // q with a dot above and one below has no precomposed form (NFC keeps three code points, dot below first).
    const marks = 'q\u0307\u0323'.repeat(100);
    const cutMarks = sanitizeName(marks);
    assert.equal(cutMarks.length, 198);
    assertWholeClusters(cutMarks, marks);
    // Skin tones and keycaps, at every offset, so the cut lands on each part of them once.
    for (let pad = 0; pad < 12; pad++) {
      const raw = `${'c'.repeat(180 + pad)}${'👍🏽1️⃣'.repeat(10)}.txt`;
      const out = sanitizeName(raw);
      assert.ok(out.length <= 200 && out.endsWith('.txt'), out);
      assertWholeClusters(out.slice(0, -4), raw);
    }
  });
});

describe('malformed multipart', () => {
  let s: Running;
  before(async () => {
    s = await startService({ token: 't' }, { runJobs: false });
  });
  after(() => s.stop());

  const post = async (contentType: string, body: string) => {
    const res = await fetch(`${s.url}/files`, {
      method: 'POST',
      body,
      headers: { authorization: 'Bearer t', 'content-type': contentType },
    });
    return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
  };
  const part = (boundary: string, name = 'a.txt') =>
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\nhello\r\n--${boundary}--\r\n`;

  it('answers 400 ERR_WEFT_FILES_MULTIPART with what is wrong, and keeps nothing', async () => {
    const long = 'x'.repeat(300);
    const cases: [string, string, string, RegExp][] = [
      ['no boundary', 'multipart/form-data', 'garbage', /no boundary/],
      ['empty boundary', 'multipart/form-data; boundary=', 'garbage', /no boundary/],
      ['empty quoted boundary', 'multipart/form-data; boundary=""', 'garbage', /no boundary/],
      ['boundary of 300', `multipart/form-data; boundary=${long}`, part(long), /300 characters.*at most 70/],
      [
        'boundary of 71',
        `multipart/form-data; boundary=${'y'.repeat(71)}`,
        part('y'.repeat(71)),
        /71 characters/,
      ],
      [
        'boundary with a bad character',
        'multipart/form-data; boundary=a<b',
        part('a<b'),
        /characters RFC 2046/,
      ],
      [
        'body without the boundary',
        'multipart/form-data; boundary=abc',
        'garbage, no boundary at all',
        /malformed/,
      ],
      [
        'body cut inside its part',
        'multipart/form-data; boundary=abc',
        '--abc\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello, never closed',
        /malformed/,
      ],
    ];
    for (const [what, type, body, message] of cases) {
      const res = await post(type, body);
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error?.code, 'ERR_WEFT_FILES_MULTIPART', what);
      assert.match(res.body.error!.message, message, what);
    }
    assert.deepEqual((await (await fetch(`${s.url}/files`)).json()) as { files: unknown[] }, { files: [] });
    assert.deepEqual(
      filesUnder(s.dataDir).filter((f) => f.startsWith('objects') || f.startsWith('tmp')),
      [],
    );
  });

  it('takes well-formed ones: a 70-character boundary, a quoted one with a space', async () => {
    const b70 = 'z'.repeat(70);
    const ok70 = await post(`multipart/form-data; boundary=${b70}`, part(b70, 'seventy.txt'));
    assert.equal(ok70.status, 201, JSON.stringify(ok70.body));
    const quoted = await post('multipart/form-data; boundary="a b"', part('a b', 'quoted.txt'));
    assert.equal(quoted.status, 201, JSON.stringify(quoted.body));
    assert.equal((quoted.body as unknown as { name: string }).name, 'quoted.txt');
  });

  it('a multipart file name loses its bidi controls too', async () => {
    const res = await post('multipart/form-data; boundary=abc', part('abc', 'invoice\u202Efdp.exe'));
    assert.equal(res.status, 201);
    assert.equal((res.body as unknown as { name: string }).name, 'invoicefdp.exe');
  });
});
