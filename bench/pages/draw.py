"""The browser's time to a drawn chart: Debian's Chromium driven by Playwright's sync API.

An init script (run before any of the page's own) records, in ms since navigation start:
- `svg`: when each chart's `.main-svg` first appears in the DOM;
- `drawn`: when `Plotly.newPlot` for that chart resolved (plotly_afterplot: traces, shapes and
  axes drawn), by wrapping `Plotly.newPlot` as plotly.js defines it.
The first visit has an empty cache (plotly.js is fetched); the next visits reuse the context's
cache, as a contributor coming back does.
"""

import os
import shutil
import tempfile

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# As tests/support/browser.py launches it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

HOOK = """
(() => {
  const bench = (window.__bench = { svg: {}, drawn: {} });
  const charts = () => document.querySelectorAll("[data-figure]");
  new MutationObserver(() => {
    for (const el of charts()) {
      if (!(el.id in bench.svg) && el.querySelector(".main-svg")) {
        bench.svg[el.id] = performance.now();
      }
    }
  }).observe(document, { childList: true, subtree: true });
  let real;
  Object.defineProperty(window, "Plotly", {
    configurable: true,
    get() { return real; },
    set(value) {
      real = value;
      if (value && value.newPlot && !value.__bench) {
        const newPlot = value.newPlot;
        value.newPlot = function (el, ...rest) {
          const id = typeof el === "string" ? el : el.id;
          return Promise.resolve(newPlot.call(this, el, ...rest)).then((gd) => {
            bench.drawn[id] = performance.now();
            return gd;
          });
        };
        value.__bench = true;
      }
    },
  });
})();
"""

ALL_DRAWN = """() => {
  const ids = [...document.querySelectorAll("[data-figure]")].map((el) => el.id);
  return ids.length > 0 && ids.every((id) => id in window.__bench.drawn);
}"""

RESULT = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return {
    bench: window.__bench,
    ttfb_ms: nav ? nav.responseStart : null,
    html_ms: nav ? nav.responseEnd : null,
    dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
    html_bytes: nav ? nav.transferSize : null,
  };
}"""


def available() -> str | None:
    return shutil.which(CHROMIUM) or (CHROMIUM if os.path.exists(CHROMIUM) else None)


def measure(base_url: str, cookie: dict, targets, visits: int = 3, timeout_s: float = 60,
            before_each=None):  # fmt: skip
    """For each (name, path, chart id): `visits` loads in one browser context.

    Returns {name: {"visits": [...], "status": ...}}; a visit that gets no 200 or never draws
    is recorded as such and ends that target.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="bench-pages-chromium-")
    os.environ.setdefault("XDG_CONFIG_HOME", os.path.join(home, "config"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(home, "cache"))
    results = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=available(), args=CHROMIUM_ARGS)
            for name, path, chart in targets:
                if before_each:
                    before_each()
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([{**cookie, "url": base_url}])
                context.add_init_script(HOOK)
                page = context.new_page()
                errors = []
                page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                visits_out = []
                for visit in range(visits):
                    record = {"visit": visit + 1, "cache": "cold" if visit == 0 else "warm"}
                    try:
                        response = page.goto(
                            base_url + path, wait_until="commit", timeout=timeout_s * 1000
                        )
                        record["status"] = response.status if response else None
                        if record["status"] == 200:
                            page.wait_for_function(ALL_DRAWN, timeout=timeout_s * 1000)
                        info = page.evaluate(RESULT)
                    except PlaywrightError as exc:
                        record["error"] = str(exc).splitlines()[0][:200]
                        try:
                            info = page.evaluate(RESULT)
                        except PlaywrightError:
                            info = {"bench": {"svg": {}, "drawn": {}}}
                    drawn = info.get("bench") or {"svg": {}, "drawn": {}}
                    record.update(
                        chart_svg_ms=_ms(drawn["svg"].get(chart)),
                        chart_drawn_ms=_ms(drawn["drawn"].get(chart)),
                        all_drawn_ms=_ms(max(drawn["drawn"].values(), default=None)),
                        ttfb_ms=_ms(info.get("ttfb_ms")),
                        html_ms=_ms(info.get("html_ms")),
                        dom_content_loaded_ms=_ms(info.get("dom_content_loaded_ms")),
                    )
                    visits_out.append(record)
                    if record.get("status") != 200 or record["chart_drawn_ms"] is None:
                        break
                results[name] = {"path": path, "chart": chart, "visits": visits_out,
                                 "page_errors": errors[:5]}  # fmt: skip
                context.close()
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return results


def _ms(value):
    return None if value is None else round(float(value), 1)
