import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sanitiseColumns } from '../../src/processors/columns.ts';

describe('sanitiseColumns', () => {
  it('folds accents and case, and turns other runs of characters into one underscore', () => {
    assert.deepEqual(sanitiseColumns(['Prénom', 'Total ($) — 2024', '  e-mail  ', 'Ünïcödé']), [
      'prenom',
      'total_2024',
      'e_mail',
      'unicode',
    ]);
  });

  it('names empty and symbol-only cells by position, prefixes a leading digit', () => {
    assert.deepEqual(sanitiseColumns(['', '€€', '2024', '日本']), ['col_1', 'col_2', 'c_2024', 'col_4']);
  });

  it('de-duplicates in order, never yields _line, and caps names at 63 characters', () => {
    assert.deepEqual(sanitiseColumns(['a', 'A', 'a_2', 'a', '_line']), ['a', 'a_2', 'a_2_2', 'a_3', 'line']);
    const long = sanitiseColumns(['x'.repeat(100), 'x'.repeat(100)]);
    assert.deepEqual(
      long.map((name) => name.length),
      [63, 63],
    );
    assert.notEqual(long[0], long[1]);
    assert.ok(long.every((name) => /^[a-z_][a-z0-9_]*$/.test(name)));
  });
});
