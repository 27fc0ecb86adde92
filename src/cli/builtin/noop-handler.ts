/** No-op task handler used by `qtune bench`: returns the moment it started, in fractional epoch ms. */
export default async function noop(): Promise<{ t: number }> {
  return { t: performance.timeOrigin + performance.now() };
}
