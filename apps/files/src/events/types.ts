/**
 * The file service's events: what happened to files and jobs, on a `weftjs/bus` (events/bus.ts). The dashboard's
 * live feed and the service's metrics read them; `node.seen` carries the node registry's heartbeats (nodes.ts).
 */
import type { JobKind } from '../queue/types.ts';

/** The file and job events, by name, with their payloads. */
export interface FilesEvents {
  /** `tenant`: whose file it is (docs/files.md, "Tokens and tenants"); null or absent: no one's. */
  'file.uploaded': {
    fileId: string;
    name: string;
    type: string;
    size: number;
    jobs: JobKind[];
    tenant?: string | null;
  };
  'file.deleted': { fileId: string; tenant?: string | null };
  'job.completed': { jobId: number; fileId: string; kind: JobKind; attempts: number; ms: number };
  'job.failed': {
    jobId: number;
    fileId: string;
    kind: JobKind;
    attempts: number;
    error: string;
    code: string | null;
    /** True when it went to the dead-letter state; false when it will be retried. */
    dead: boolean;
  };
}

export type EventType = keyof FilesEvents;

/** Every event type, in one list (what `on('*')` subscribes to). */
export const EVENT_TYPES: readonly EventType[] = [
  'file.uploaded',
  'file.deleted',
  'job.completed',
  'job.failed',
];

/**
 * One event as a listener receives it. `id` is the bus's: unique, and in publishing order for one publisher (see
 * docs/bus.md for what each scope guarantees); `at` is when it was published, epoch ms.
 */
export type FilesEvent = {
  [K in EventType]: { id: string; type: K; data: FilesEvents[K]; at: number };
}[EventType];

/** A listener of one event type, or of every event (`'*'`). */
export type EventListener<K extends EventType | '*'> = (
  event: K extends EventType ? Extract<FilesEvent, { type: K }> : FilesEvent,
) => void;
