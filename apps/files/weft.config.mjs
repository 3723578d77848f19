/**
 * The file service's supervisor settings: `weft start --config apps/files/weft.config.mjs <server>` (`npm start` and
 * the benchmarks use it).
 */
export default {
  // V8's young generation capped at 1 MB a semi-space (default 16 MB on 64-bit). In 6 alternating rounds against
  // 4 MB (`node bench/files-young-gen.ts`): an idle worker 88.5 MB instead of 96.1 MB, 25 % less CPU per GB uploaded,
  // CSV rows/s the same, small uploads 0.94× (per round 0.76× to 1.02×). docs/files.md#memory has the figures.
  execArgv: [...process.execArgv, '--max-semi-space-size=1'],
  env: {
    // One glibc malloc arena per worker process. With glibc's default (8 per core), the memory libvips frees after
    // each image stays in the arenas of the threads that used it: a worker held 264 MB after 24 photos and kept it.
    // With one arena it held 178 MB, at the same images/s (docs/files.md#memory has the measurements). Set
    // MALLOC_ARENA_MAX yourself to choose another value; jemalloc (LD_PRELOAD) returns memory too.
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '1',
  },
};
