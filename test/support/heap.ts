// A full garbage collection in another Node process, through its inspector (started with
// --inspect=127.0.0.1:0), so that its RSS, read afterwards, is what it holds and not garbage
// awaiting collection. The soak and the benchmark measure memory this way.

/** The inspector's WebSocket URL, from what the process printed (stderr). */
export function inspectorUrl(output: string): string | undefined {
  return /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1];
}

export async function collectGarbage(url: string): Promise<void> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    ws.onmessage = (event) => {
      if (JSON.parse(String(event.data)).id === 1) resolve();
    };
    ws.onerror = () => reject(new Error('inspector connection failed'));
  });
  ws.close();
  // The process returns the freed pages to the system shortly after.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
}
