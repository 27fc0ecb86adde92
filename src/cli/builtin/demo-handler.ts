/**
 * Task handler used by `qtune demo`: counts the primes below `n` by trial division, a small
 * CPU-bound job standing in for real work.
 */
export default async function countPrimes(
  payload: unknown,
): Promise<{ n: number; primes: number }> {
  const n = (payload as { n?: unknown } | null)?.n;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new Error(`payload.n must be a non-negative integer, got ${JSON.stringify(n)}`);
  }
  let primes = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) primes++;
  }
  return { n, primes };
}
