// Fault injection against the local disk (ENOSPC), embedded defaults: see faults.ts.
import { diskFaults } from './faults.ts';

diskFaults();
