// The dashboard's shell: routes (#/ jobs, #/jobs/ID one job, #/compare/ID,ID…), the API key prompt and the
// error banner. A call refused as unauthenticated brings up the key form; the key lives in this tab only.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { apiKey, errorText, isUnauthenticated } from './api.js';
import { CompareView } from './compare-view.js';
import { JobView } from './job-view.js';
import { JobsView } from './jobs-view.js';
import { ReportError } from './report.js';

type Route = { view: 'jobs'; compare: string[] } | { view: 'job'; id: string } | { view: 'compare'; ids: string[] };

function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'jobs' && parts[1]) return { view: 'job', id: parts[1] };
  if (parts[0] === 'compare' && parts[1]) return { view: 'compare', ids: parts[1].split(',').filter(Boolean) };
  return { view: 'jobs', compare: new URLSearchParams(query).getAll('compare') };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function App() {
  const route = useRoute();
  const [keyNeeded, setKeyNeeded] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  // Views remount with each new key, so every poll and stream starts again with it.
  const [session, setSession] = useState(0);

  const report = useCallback((e: unknown) => {
    if (isUnauthenticated(e)) {
      setKeyNeeded(apiKey.get() ? `The server refused this key (${errorText(e)}).` : 'This server needs an API key.');
    } else {
      setProblem(errorText(e));
    }
  }, []);

  const useKey = (key: string) => {
    apiKey.set(key);
    setKeyNeeded(null);
    setProblem(null);
    setSession((n) => n + 1);
  };

  return (
    <ReportError.Provider value={report}>
      <header class="top">
        <a href="#/" class="brand">
          narrowtune
        </a>
        <nav>
          <a href="#/" class={route.view === 'jobs' ? 'current' : ''}>
            jobs
          </a>
        </nav>
      </header>
      <main>
        {problem && (
          <p class="error banner" role="alert">
            {problem}{' '}
            <button class="link" onClick={() => setProblem(null)}>
              dismiss
            </button>
          </p>
        )}
        {keyNeeded !== null ? (
          <KeyForm message={keyNeeded} onKey={useKey} />
        ) : route.view === 'job' ? (
          <JobView key={`${session}:${route.id}`} id={route.id} />
        ) : route.view === 'compare' ? (
          <CompareView key={`${session}:${route.ids.join()}`} ids={route.ids} />
        ) : (
          <JobsView key={session} preselect={route.compare} />
        )}
      </main>
    </ReportError.Provider>
  );
}

function KeyForm({ message, onKey }: { message: string; onKey: (key: string) => void }) {
  const [key, setKey] = useState('');
  return (
    <form
      class="key-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (key.trim()) onKey(key.trim());
      }}
    >
      <h2>API key</h2>
      <p class={apiKey.get() ? 'error' : ''} role="alert">
        {message}
      </p>
      <p class="muted small">It is kept in this tab only (sessionStorage) and sent as authorization: Bearer.</p>
      <input type="password" autocomplete="off" placeholder="nt_…" value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} aria-label="API key" />
      <button type="submit" class="primary">
        Use key
      </button>
    </form>
  );
}

render(<App />, document.getElementById('app')!);
