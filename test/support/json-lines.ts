/** Calls `onValue` with each JSON value printed one per line on `stream` (a child's stdout). */
export function onJsonLines(
  stream: NodeJS.ReadableStream & { setEncoding(enc: BufferEncoding): unknown },
  onValue: (value: unknown) => void,
): void {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line !== '') onValue(JSON.parse(line));
    }
  });
}
