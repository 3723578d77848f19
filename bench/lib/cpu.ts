import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on Linux, whatever the kernel's own tick). */
const USER_HZ = 100;

/** CPU seconds (user + system) of every process whose name (`/proc/<pid>/comm`) is one of `names`; 0 off Linux. */
function serversCpuSeconds(names: readonly string[]): number {
  if (names.length === 0 || process.platform !== 'linux') return 0;
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the name (which may hold spaces) start at its closing parenthesis; utime and stime are the
      // 14th and 15th fields of the line, the 12th and 13th after it.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended while it was read: its time is not counted.
    }
  }
  return ticks / USER_HZ;
}

/** CPU time used during a measured phase: this process's, and the servers' it talks to. */
export interface CpuSpent {
  /** This process (every thread), seconds. */
  own: number;
  /** The processes named when the clock started (RabbitMQ's `beam.smp`, `redis-server`, `postgres`), seconds. */
  servers: number;
}

/**
 * Starts counting CPU time: the returned function gives what this process and the named server processes used
 * since. Servers' time has /proc's resolution (10 ms), so measure phases of a second or more.
 */
export function cpuClock(servers: readonly string[] = []): () => CpuSpent {
  // This process's clock starts after the scan of /proc and stops before the next, so that neither is counted.
  const theirs = serversCpuSeconds(servers);
  const own = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(own);
    const serversUsed = serversCpuSeconds(servers) - theirs;
    return { own: (used.user + used.system) / 1e6, servers: serversUsed };
  };
}
