/** Exit codes of every qtune command; scripts may rely on them. */
export const ExitCode = {
  Ok: 0,
  /** The command ran but the work failed (e.g. tasks dead-lettered in `qtune demo`). */
  Failure: 1,
  /** Bad usage or bad input: unknown flag, malformed file, invalid value. */
  BadInput: 2,
  /** The broker could not be opened or reached. */
  BrokerUnavailable: 3,
  /** A queue, job, experiment or broker file named on the command line does not exist. */
  NotFound: 4,
  /** Interrupted by a second SIGINT/SIGTERM. */
  Interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
