// Fault injection against Redis (the queue): see faults.ts.
import { backendFaults } from './faults.ts';

backendFaults('queue');
