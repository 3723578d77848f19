/**
 * What the `files` benchmark reads from /proc (Linux): the processes of a process group, their CPU time (in all,
 * and in libvips' own worker threads), and their resident memory sampled over a measurement window.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's CPU times (`getconf CLK_TCK`; 100 on Linux). */
const TICKS = 100;

/** The processes whose process group is `pgid`, with the CPU seconds (user + system) each used so far (Linux). */
export function groupCpu(pgid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may itself contain spaces and parentheses;
      // fields[0] is field 3 of proc(5): pgrp is field 5, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid)
        out.set(Number(name), (Number(fields[11]) + Number(fields[12])) / TICKS);
    } catch {}
  }
  return out;
}

/** CPU seconds (user + system) of `pid`'s live threads named `libvips worker`: where sharp's pixel work runs. */
export function libvipsCpu(pid: number | 'self'): number {
  let ticks = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'libvips worker') continue;
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {}
    }
  } catch {}
  return ticks / TICKS;
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Peak resident memory of one process over a sampling window, bytes. */
export interface ProcessPeak {
  pid: number;
  /** The group's leader: the supervisor under weft, the server itself for a fixture. */
  leader: boolean;
  /** VmRSS at the first sample, when the window opened. */
  first: number;
  /** Highest VmRSS seen in the 100 ms samples. */
  sampled: number;
  /** VmHWM at the end, after it was reset at the start (when the kernel allowed the reset), else undefined. */
  hwm: number | undefined;
  /**
   * Highest RssAnon sampled: the process's private memory. VmRSS also counts the file-backed pages it maps, such as
   * the node binary's, which every Node process on the machine shares.
   */
  anon: number;
  /** CPU seconds (user + system, all its threads) it used during the window. */
  cpu: number;
  /** Of which in libvips' worker threads (threads that lived through the window). */
  libvipsCpu: number;
}

/**
 * Samples VmRSS of every process in the group every 100 ms until `stop()`; resets each one's VmHWM at the start
 * (`echo 5 > /proc/<pid>/clear_refs`) so the end reading is the true peak of the window, between samples too.
 */
export function sampleGroup(pgid: number): { stop(): ProcessPeak[] } {
  const peaks = new Map<
    number,
    { first: number; sampled: number; anon: number; reset: boolean; cpu0: number; cpu: number; vips0: number }
  >();
  const sample = () => {
    for (const [pid, cpu] of groupCpu(pgid)) {
      let p = peaks.get(pid);
      if (!p) {
        let reset = false;
        try {
          writeFileSync(`/proc/${pid}/clear_refs`, '5');
          reset = true;
        } catch {}
        const rss = (statusKb(pid, 'VmRSS') ?? 0) * 1024;
        p = { first: rss, sampled: rss, anon: 0, reset, cpu0: cpu, cpu, vips0: libvipsCpu(pid) };
        peaks.set(pid, p);
      }
      p.cpu = cpu;
      p.sampled = Math.max(p.sampled, (statusKb(pid, 'VmRSS') ?? 0) * 1024);
      p.anon = Math.max(p.anon, (statusKb(pid, 'RssAnon') ?? 0) * 1024);
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return [...peaks].map(([pid, p]) => {
        const hwm = p.reset ? statusKb(pid, 'VmHWM') : undefined;
        const peak = {
          pid,
          leader: pid === pgid,
          first: p.first,
          sampled: p.sampled,
          anon: p.anon,
          cpu: p.cpu - p.cpu0,
          libvipsCpu: libvipsCpu(pid) - p.vips0,
        };
        return { ...peak, hwm: hwm === undefined ? undefined : hwm * 1024 };
      });
    },
  };
}

/** Resident memory of one process now, bytes: VmRSS, its private part (RssAnon) and its proportional share (Pss). */
export interface Resident {
  pid: number;
  rss: number;
  anon: number;
  /** Pss from /proc/<pid>/smaps_rollup: private pages plus each shared page divided by the processes sharing it. */
  pss: number;
}

/** {@link Resident} of every process of the group but its leader (the workers under weft), by pid. */
export function workersResident(pgid: number): Resident[] {
  const out: Resident[] = [];
  for (const pid of groupCpu(pgid).keys()) {
    if (pid === pgid) continue;
    let pss = 0;
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      pss = m ? Number(m[1]) * 1024 : 0;
    } catch {}
    out.push({
      pid,
      rss: (statusKb(pid, 'VmRSS') ?? 0) * 1024,
      anon: (statusKb(pid, 'RssAnon') ?? 0) * 1024,
      pss,
    });
  }
  return out.sort((a, b) => a.pid - b.pid);
}
