/** Types of reaper.mjs. */
/** Pids of the cleanup shells this process started and has not cancelled. */
export const reaperPids: Set<number>;
export function reapOnExit(script: string, env?: NodeJS.ProcessEnv): { cancel(): void };
