// Fault injection against Redis (the queue), cut: see faults.ts. The blackhole is faults-queue-blackhole.test.ts: each
// case waits for every job of 200 uploads on Redis, about 40 s, and one file per case keeps each file well inside
// the runner's per-file timeout on a loaded machine (both in one file took 113 s of 120 in a CI run on Node 22).
import { backendFaults } from './faults.ts';

backendFaults('queue', ['cut']);
