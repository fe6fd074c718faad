// Follows jobs' metric streams into JobSeries and re-renders at most once per animation frame, however fast
// events arrive (a long job's backlog comes in thousands at once).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { followJob, type FollowStatus } from './follow.js';
import { JobSeries } from './series.js';

export function useSeries(names: string[], report: (e: unknown) => void): { series: JobSeries[]; version: number; status: FollowStatus[] } {
  const key = names.join();
  const series = useMemo(() => names.map(() => new JobSeries()), [key]);
  const [version, setVersion] = useState(0);
  const [status, setStatus] = useState<FollowStatus[]>([]);

  useEffect(() => {
    let frame = 0;
    const redraw = () => {
      frame ||= requestAnimationFrame(() => {
        frame = 0;
        setVersion((v) => v + 1);
      });
    };
    const stops = names.map((name, i) =>
      followJob(
        name,
        () => series[i]!.lastSequence,
        (e) => series[i]!.apply(e) && redraw(),
        (s) => {
          if (s.kind === 'failed') report(s.error);
          setStatus((cur) => Object.assign([...cur], { [i]: s }));
        },
      ),
    );
    return () => {
      for (const stop of stops) stop();
      cancelAnimationFrame(frame);
    };
  }, [key]);

  return { series, version, status };
}
