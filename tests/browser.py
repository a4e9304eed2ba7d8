"""Open an HTML page in headless Chromium (Debian's `chromium`) and report how it rendered: script
errors and failed loads, images loaded, page size. Tests skip where Chromium is not installed."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
NO_CHROMIUM = "headless Chromium not installed (Debian: apt-get install chromium); the browser check needs it"
WINDOW = (1400, 1000)   # the width the report's galleries are sized for
# Appended first thing in <head> of a copy of the page: records errors (scripts, images, console.error)
# and, once loaded, what rendered, into a <pre> that --dump-dom prints.
PROBE = """<script>
window.probeErrors = [];
window.addEventListener("error", e => probeErrors.push(e.message || "failed to load " + (e.target.src || e.target.href)), true);
console.error = (...args) => probeErrors.push(args.join(" "));
window.addEventListener("load", () => {
  const images = [...document.images];
  const result = {errors: probeErrors, images: images.length,
                  loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
                  height: document.body.scrollHeight, width: document.documentElement.scrollWidth};
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def flags(profile: Path, height: int = WINDOW[1]) -> list[str]:
    """Headless, offline-quiet Chromium with a fresh profile folder and a window WINDOW[0] px wide."""
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{height}"]


def render(page: Path, scratch: Path) -> dict:
    """How `page` rendered: {"errors": [...], "images": n, "loaded": n, "height": px, "width": px}."""
    probe = page.with_name(f"probe-{page.name}")           # beside the page: relative links still resolve
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    try:
        done = subprocess.run([*flags(scratch / "profile"), "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise AssertionError(f"chromium rendered no probe result (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, scratch: Path, height: int) -> None:
    """The whole page (`height` px tall, from render) as a PNG at the report's width."""
    subprocess.run([*flags(scratch / "profile-shot", height), f"--screenshot={png}",
                    "--hide-scrollbars", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
