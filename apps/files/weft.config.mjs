/**
 * The file service's supervisor settings: `weft start --config apps/files/weft.config.mjs <server>` (`npm start` and
 * the benchmarks use it).
 */
export default {
  // V8's young generation capped at 4 MB a semi-space (default 16 MB on 64-bit): a worker that has handled uploads
  // and images keeps about 10 MB less (172 MB after 24 photos, against 182 MB), at the same upload CPU per GB and
  // images/s. At 1 MB it kept less still but cost 12 % more CPU per GB uploaded (docs/files.md#memory).
  execArgv: [...process.execArgv, '--max-semi-space-size=4'],
  env: {
    // One glibc malloc arena per worker process. With glibc's default (8 per core), the memory libvips frees after
    // each image stays in the arenas of the threads that used it: a worker held 264 MB after 24 photos and kept it.
    // With one arena it held 178 MB, at the same images/s (docs/files.md#memory has the measurements). Set
    // MALLOC_ARENA_MAX yourself to choose another value; jemalloc (LD_PRELOAD) returns memory too.
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '1',
  },
};
