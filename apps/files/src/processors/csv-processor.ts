/**
 * The built-in CSV processor, a plug-in registered by default for `text/csv`: loads the rows into a table of the
 * catalog's database (`csv_<file id>`, read through `GET /files/:id/rows`); its result says how (columns, rows,
 * bad rows and the dialect found). It makes no output file. The types it runs on and its permanent errors are in
 * builtin.ts, which the main thread reads without importing this module.
 * @module
 */
import { csvTableFor } from '../catalog/types.ts';
import type { CsvProcessorOptions } from './builtin.ts';
import { type CsvJobResult, loadCsv } from './csv.ts';
import { defineProcessor } from './plugin.ts';

export default defineProcessor<CsvProcessorOptions, CsvJobResult>({
  async run({ input, file, options, signal }) {
    const result = await loadCsv(
      { input, database: options.database, table: csvTableFor(file.id), maxBadRows: options.maxBadRows },
      signal,
    );
    return { result };
  },
});
