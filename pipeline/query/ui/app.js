// The page router: one HTML shell, the path picks the page.
import { showState } from './util.js';
import { renderSearch } from './search.js';
import { renderTrace } from './trace.js';
import { renderDependencies } from './dependencies.js';
import { renderPipeline } from './pipeline.js';

function route() {
  const main = document.getElementById('main');
  const path = location.pathname;
  let page = 'search';
  let done;
  if (path === '/' || path === '/search') {
    done = renderSearch(main);
  } else if (path.startsWith('/trace/')) {
    page = 'trace';
    done = renderTrace(main, decodeURIComponent(path.slice('/trace/'.length)));
  } else if (path === '/dependencies') {
    page = 'dependencies';
    done = renderDependencies(main);
  } else if (path === '/pipeline') {
    page = 'pipeline';
    done = renderPipeline(main);
  } else {
    showState(main, 'error', `No page at ${path}.`);
  }
  for (const a of document.querySelectorAll('.topbar nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
  Promise.resolve(done).catch((e) => showState(main, 'error', `The page failed: ${e.message}`));
}

document.getElementById('lookup').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = document.getElementById('lookup-id').value.trim();
  if (id) location.assign(`/trace/${encodeURIComponent(id)}`);
});
window.addEventListener('popstate', route);
route();
