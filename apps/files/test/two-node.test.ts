// Two `weft start` nodes sharing Redis (BullMQ and the event bus), PostgreSQL and S3: see two-node-suite.ts.
import { twoNodeSuite } from './two-node-suite.ts';

await twoNodeSuite('Redis');
