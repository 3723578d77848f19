// Fault injection against Redis (the queue), blackholed: see faults.ts and faults-queue.test.ts.
import { backendFaults } from './faults.ts';

backendFaults('queue', ['blackhole']);
