import { FleetletError, isErrno } from '../lib/errors.js';

/** What the errno codes of a failed spawn mean for the k3s binary, in fleetlet's own words. */
const SPAWN_CODE_REASONS: Record<string, string> = {
  ENOENT: 'the k3s binary, or the interpreter its first line names, does not exist',
  EACCES: 'the k3s binary is not executable (its mode, or a noexec mount)',
  EPERM: 'the system does not allow the k3s binary to run',
  ENOEXEC: 'the k3s binary is not a program for this machine (another architecture, or a truncated file)',
  ETXTBSY: 'the k3s binary is being written',
  E2BIG: 'the k3s arguments are too long',
  ENOMEM: 'not enough memory to start k3s',
  EMFILE: 'fleetlet has too many open files',
  ERR_INVALID_ARG_VALUE: 'an argument or environment variable of k3s holds a NUL byte',
};

/** Getting ready (identity check, version, arguments, token file), or the spawn itself. */
export type StartStep = 'prepare' | 'spawn';

export interface StartFailureDetail {
  step: StartStep;
  /** An errno or Node.js error code, or the name of fleetlet's own error class. */
  code: string;
  reason?: string;
}

/**
 * What may be said about a failed start of k3s, in an event on the wire and in the log: a code and a reason fleetlet
 * wrote, never the error's own message. Node's messages quote what they refused (an environment variable with a
 * NUL byte, the token in it, is quoted whole).
 */
export function startFailureDetail(err: unknown, step: StartStep): StartFailureDetail {
  // fleetlet's own errors (the arguments, the identity check) are written never to hold a secret, and say what to fix.
  if (err instanceof FleetletError) return { step, code: err.name, reason: err.message };
  if (!isErrno(err) || !/^[A-Z][A-Z0-9_]{1,63}$/.test(err.code)) return { step, code: 'UNKNOWN' };
  const code = err.code;
  // An EACCES while preparing is a file fleetlet could not write, not the binary: only the spawn's codes are explained.
  const reason = step === 'spawn' ? SPAWN_CODE_REASONS[code] : undefined;
  return reason ? { step, code, reason } : { step, code };
}
