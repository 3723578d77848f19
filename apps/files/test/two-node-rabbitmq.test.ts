// Two `weft start` nodes sharing RabbitMQ (jobs' state in PostgreSQL), PostgreSQL and S3: see two-node-suite.ts.
import { twoNodeSuite } from './two-node-suite.ts';

await twoNodeSuite('RabbitMQ');
