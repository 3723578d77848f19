// Fault injection against PostgreSQL (the records): see faults.ts.
import { backendFaults } from './faults.ts';

backendFaults('database');
