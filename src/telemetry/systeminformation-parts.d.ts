// Types for the four systeminformation modules the inventory loads one by one (the package only types its index).
declare module 'systeminformation/lib/system.js' {
  import type { Systeminformation } from 'systeminformation';
  export function system(): Promise<Systeminformation.SystemData>;
}
declare module 'systeminformation/lib/cpu.js' {
  import type { Systeminformation } from 'systeminformation';
  export function cpu(): Promise<Systeminformation.CpuData>;
}
declare module 'systeminformation/lib/osinfo.js' {
  import type { Systeminformation } from 'systeminformation';
  export function osInfo(): Promise<Systeminformation.OsData>;
}
declare module 'systeminformation/lib/memory.js' {
  import type { Systeminformation } from 'systeminformation';
  export function mem(): Promise<Systeminformation.MemData>;
}
