// CPU time of the workerd process, read from inside a benchmark (bench/cpu-clock.global.mjs serves it).
// Figures per CPU second stay meaningful on a machine shared with other work, where wall-clock rates
// depend on the load. Resolution: 10 ms (/proc clock ticks): time windows of a second or more.
import { inject } from "vitest";

/** CPU seconds workerd has used so far, or null where it cannot be read (no /proc). */
export async function workerdCpuSeconds(): Promise<number | null> {
  try {
    const res = await fetch(inject("cpuClockUrl"));
    return ((await res.json()) as { cpuSeconds: number | null }).cpuSeconds;
  } catch {
    return null;
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    cpuClockUrl: string;
  }
}
