// Fault injection against the S3 server (the bytes): see faults.ts.
import { backendFaults } from './faults.ts';

backendFaults('storage');
