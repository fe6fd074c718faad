// Calls `fn` now and every `everyMs` after it settles, until the component unmounts or `deps` change; a failure is
// reported and the next tick tries again.
import { useEffect } from 'preact/hooks';

export function usePoll(fn: (signal: AbortSignal) => Promise<boolean | void>, everyMs: number, deps: unknown[], onError: (e: unknown) => void): void {
  useEffect(() => {
    const stop = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      // fn returns false when there is nothing left to poll for (a resting job).
      const again = await fn(stop.signal).catch((e: unknown) => {
        if (!stop.signal.aborted) onError(e);
        return true;
      });
      if (again !== false && !stop.signal.aborted) timer = setTimeout(tick, everyMs);
    };
    void tick();
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, deps);
}
