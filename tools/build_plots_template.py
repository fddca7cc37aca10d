#!/usr/bin/env python3
"""Build an offline HTML template for ``dvc plots show`` / ``dvc plots diff``.

DVC's default plots page (dvc_render.html.PAGE_HTML plus the vega renderer's
SCRIPTS) loads vega, vega-lite and vega-embed from cdn.jsdelivr.net with
``<script src="https://...">``, so the page is blank without internet.  This
script writes ``tools/plots_template.html``: the same page layout with
the three libraries' minified browser (UMD) builds inlined in ``<script>``
tags, in dependency order (vega -> vega-lite -> vega-embed).

How DVC uses the template (dvc_render 1.0.x, ``render_html``):
  * ``{plot_divs}`` is REQUIRED and replaced by the plot <div>s, each of which
    calls ``vegaEmbed(...)`` inline, so the libraries must load before it;
  * ``{refresh_tag}`` is replaced by an optional <meta refresh> tag (kept);
  * the "scripts" placeholder receives the renderers' CDN <script src> tags.
    The generated template deliberately does NOT contain it, which is what
    drops the CDN references from the output page.
  Replacement is a plain ``str.replace`` over the whole file, so those
  placeholder strings must not appear anywhere else (checked below).

Usage (stdlib only; needs ``npm`` on PATH unless --packages-dir is given):

    python tools/build_plots_template.py
    python tools/build_plots_template.py --vega 5 --vega-lite 5 --vega-embed 6
    python tools/build_plots_template.py --packages-dir DIR   # offline rebuild

``--packages-dir`` takes a folder holding the npm packages, either as the
tarballs written by ``npm pack`` (``vega-5.33.1.tgz`` ...) or as unpacked
packages (``DIR/<name>/package.json``, ``DIR/<name>/package/package.json`` or
``DIR/node_modules/<name>/package.json``).  Without it, the script runs
``npm pack vega@5 vega-lite@5 vega-embed@6`` in a temporary directory.

Default version ranges follow the majors DVC 3.x's dvc_render loads
(vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2); the newest release within
each major is taken (later 5.x releases fix vega XSS advisories).  Pass exact
versions (e.g. ``--vega 5.20.2``) to pin.

The output is deterministic for given package versions (no timestamps), so a
rebuild with the same versions produces a byte-identical file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "tools" / "plots_template.html"

# (npm package name, default version range, path of the minified UMD build
# inside the package, global it defines).  Order = load order.
PACKAGES = [
    ("vega", "5", "build/vega.min.js", "vega"),
    ("vega-lite", "5", "build/vega-lite.min.js", "vegaLite"),
    ("vega-embed", "6", "build/vega-embed.min.js", "vegaEmbed"),
]

# Placeholders dvc_render substitutes (str.replace over the whole template).
PLOTS_PLACEHOLDER = "{plot_divs}"
REFRESH_PLACEHOLDER = "{refresh_tag}"
SCRIPTS_PLACEHOLDER = "{scripts}"

# Copyright line used when a package tarball ships no LICENSE file (vega 5.x
# does not; the license is declared in package.json and the vega repo).
FALLBACK_COPYRIGHT = "Copyright (c) 2015, University of Washington Interactive Data Lab"

PAGE_TEMPLATE = """<!DOCTYPE html>
{header_comment}
<html>
<head>
    <meta charset="utf-8">
    {refresh}
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {plots}
</body>
</html>
"""


@dataclass
class Package:
    name: str
    version: str
    license: str
    copyright: str
    license_text: str | None
    build_path: str
    js: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.js.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# Reading packages
# --------------------------------------------------------------------------


class _TarSource:
    """Read files of an ``npm pack`` tarball without extracting to disk."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path, "r:gz")
        names = [m.name for m in self._tar.getmembers() if m.isfile()]
        # npm tarballs use a single top-level folder, normally "package/".
        pj = sorted((n for n in names if n.count("/") == 1 and n.endswith("/package.json")))
        if not pj:
            raise SystemExit(f"{path}: no <top>/package.json in tarball")
        self.prefix = pj[0].rsplit("/", 1)[0] + "/"
        self._names = set(names)

    def read(self, rel: str) -> str | None:
        name = self.prefix + rel
        if name not in self._names:
            return None
        member = self._tar.extractfile(name)
        assert member is not None
        return io.TextIOWrapper(member, encoding="utf-8").read()

    def close(self) -> None:
        self._tar.close()


class _DirSource:
    def __init__(self, root: Path):
        self.path = root

    def read(self, rel: str) -> str | None:
        p = self.path / rel
        return p.read_text(encoding="utf-8") if p.is_file() else None

    def close(self) -> None:
        pass


def _load_package(source, name: str, build_path: str) -> Package:
    try:
        meta = json.loads(source.read("package.json") or "null")
        if not meta or meta.get("name") != name:
            raise SystemExit(f"{source.path}: package.json is not for {name!r}")
        js = source.read(build_path)
        if js is None:
            raise SystemExit(
                f"{source.path}: {name}@{meta.get('version')} has no {build_path}"
                " (only UMD builds can be inlined; check the major version)"
            )
        license_text = None
        for cand in ("LICENSE", "LICENSE.md", "LICENSE.txt", "license"):
            license_text = source.read(cand)
            if license_text:
                break
        copyright_line = FALLBACK_COPYRIGHT
        if license_text:
            m = re.search(r"^\s*(Copyright .+?)\s*$", license_text, re.M)
            if m:
                copyright_line = m.group(1).rstrip(".")
        lic = meta.get("license")
        if isinstance(lic, dict):  # old-style {"type": ...}
            lic = lic.get("type")
        return Package(
            name=name,
            version=str(meta["version"]),
            license=str(lic or "UNKNOWN"),
            copyright=copyright_line,
            license_text=license_text,
            build_path=build_path,
            js=js,
        )
    finally:
        source.close()


def _find_in_dir(packages_dir: Path, name: str):
    """Locate package ``name`` in a folder of tarballs or unpacked packages."""
    for cand in (
        packages_dir / name,
        packages_dir / name / "package",
        packages_dir / "node_modules" / name,
    ):
        pj = cand / "package.json"
        if pj.is_file() and json.loads(pj.read_text("utf-8")).get("name") == name:
            return _DirSource(cand)
    # npm pack names tarballs "<name>-<version>.tgz" (scoped: "scope-name-...").
    pat = re.compile(re.escape(name) + r"-(\d+\.\d+\.\d+[^/]*)\.tgz$")
    tgzs = sorted(p for p in packages_dir.glob("*.tgz") if pat.match(p.name))
    if len(tgzs) > 1:
        raise SystemExit(
            f"{packages_dir}: several tarballs for {name}: "
            + ", ".join(p.name for p in tgzs)
        )
    if tgzs:
        return _TarSource(tgzs[0])
    raise SystemExit(f"{packages_dir}: no tarball or unpacked package for {name!r}")


def _npm_pack(specs: list[str], dest: Path) -> None:
    npm = shutil.which("npm")
    if not npm:
        raise SystemExit("npm not found on PATH (or pass --packages-dir)")
    cmd = [npm, "pack", *specs, "--pack-destination", str(dest), "--json"]
    print("+", " ".join(cmd[:1] + ["pack", *specs]), file=sys.stderr)
    # Run inside dest so no project .npmrc / package.json is picked up.
    res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"npm pack failed with exit code {res.returncode}")


def load_packages(packages_dir: Path | None, versions: dict[str, str]) -> list[Package]:
    if packages_dir is not None:
        return [
            _load_package(_find_in_dir(packages_dir, name), name, build)
            for name, _default, build, _glob in PACKAGES
        ]
    with tempfile.TemporaryDirectory(prefix="dvc-plots-npm-") as tmp:
        tmpdir = Path(tmp)
        _npm_pack([f"{name}@{versions[name]}" for name, *_ in PACKAGES], tmpdir)
        return [
            _load_package(_find_in_dir(tmpdir, name), name, build)
            for name, _default, build, _glob in PACKAGES
        ]


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

_SCRIPT_CLOSE = re.compile(r"</(script)", re.I)
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=\S*\s*$", re.M)


def escape_inline_js(js: str) -> str:
    """Make ``js`` safe to place between <script> and </script>.

    ``</script`` (any case) would end the element early; ``<\\/script`` is the
    same text inside JS strings, regexes and template literals.  ``<!--``
    could switch the HTML tokenizer into the "script data escaped" states, so
    it is refused rather than rewritten (minifiers normally never emit it).
    """
    js = _SCRIPT_CLOSE.sub(r"<\\/\1", js)
    # The .map files are not inlined; drop the pointer so devtools does not
    # try to fetch dvc_plots/*.min.js.map.
    js = _SOURCE_MAP.sub("", js)
    if "<!--" in js:
        raise SystemExit("inlined JS contains '<!--'; refusing to inline it unmodified")
    return js


def _comment_safe(text: str) -> str:
    # "--" is not allowed inside an HTML comment; also never emit a placeholder.
    text = text.replace("--", "- -")
    for ph in (PLOTS_PLACEHOLDER, REFRESH_PLACEHOLDER, SCRIPTS_PLACEHOLDER):
        text = text.replace(ph, ph.strip("{}"))
    return text


def render(packages: list[Package]) -> str:
    lines = [
        "GENERATED FILE, DO NOT EDIT. Regenerate with:",
        "    python tools/build_plots_template.py",
        "",
        "Offline HTML template for `dvc plots show` / `dvc plots diff`: the same",
        "page as DVC's default, but vega, vega-lite and vega-embed are inlined",
        "below instead of being loaded from a CDN, so it renders without internet.",
        "The plots placeholder is filled in by DVC; the scripts placeholder of the",
        "default page is intentionally absent (it would re-add CDN script tags).",
        "",
        "Inlined third-party code (all BSD-3-Clause):",
    ]
    for p in packages:
        lines.append(
            f"  {p.name}@{p.version}  license: {p.license}  file: {p.build_path}"
            f"  sha256: {p.sha256}"
        )
        lines.append(f"      {p.copyright}")
    lines += [
        "vega-embed's build also bundles its npm dependencies (e.g. fast-json-patch,",
        "MIT, whose notice is kept inline in the script).",
    ]
    # Reproduce the BSD-3-Clause text once (condition 2 of the license); all
    # three packages ship the same text from the same copyright holder.
    bodies: list[tuple[str, ...]] = []
    for p in packages:
        body = [ln.rstrip() for ln in (p.license_text or "").strip().splitlines()]
        # drop the copyright lines already listed above
        while body and (body[0].startswith("Copyright") or not body[0]):
            body.pop(0)
        if body and tuple(body) not in bodies:
            bodies.append(tuple(body))
    if bodies:
        lines += ["", "License text (BSD-3-Clause) of the packages above:", ""]
        for body in bodies:
            lines += ["  " + ln if ln else "" for ln in body]
            lines.append("")
    header = "<!--\n" + "\n".join(_comment_safe(ln).rstrip() for ln in lines).rstrip() + "\n-->"

    scripts = []
    for p in packages:
        js = escape_inline_js(p.js).rstrip()
        for ph in (PLOTS_PLACEHOLDER, REFRESH_PLACEHOLDER, SCRIPTS_PLACEHOLDER):
            if ph in js:
                raise SystemExit(f"{p.name}: inlined JS contains DVC placeholder {ph}")
        scripts.append(
            f"    <!-- {p.name}@{p.version} ({p.license}) -->\n"
            f"    <script>\n{js}\n    </script>"
        )

    page = PAGE_TEMPLATE.format(
        header_comment=header,
        refresh=REFRESH_PLACEHOLDER,
        scripts="\n".join(scripts),
        plots=PLOTS_PLACEHOLDER,
    )
    check_page(page)
    return page


_SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.I)
_EXTERNAL_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def check_page(page: str) -> None:
    if page.count(PLOTS_PLACEHOLDER) != 1:
        raise SystemExit(f"template must contain {PLOTS_PLACEHOLDER} exactly once")
    if SCRIPTS_PLACEHOLDER in page:
        raise SystemExit(f"template must not contain {SCRIPTS_PLACEHOLDER}")
    # No <script src=...> at all, and no external src/href in any tag outside
    # the inlined scripts (JS string literals such as the vega editor URL are
    # fine: they are not fetched when the page loads).
    for tag in _SCRIPT_TAG.findall(page):
        if re.search(r"\bsrc\s*=", tag, re.I):
            raise SystemExit(f"external script reference left in template: {tag}")
    outside = re.sub(r"<script\b[^>]*>.*?</script\s*>", "", page, flags=re.I | re.S)
    m = _EXTERNAL_ATTR.search(outside)
    if m:
        raise SystemExit(f"external src/href left in template: {m.group(0)!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                    help="output file (default: %(default)s)")
    ap.add_argument("--packages-dir", type=Path, default=None,
                    help="folder with npm pack tarballs or unpacked packages "
                         "(default: run npm pack into a temp dir)")
    for name, default, _build, _glob in PACKAGES:
        ap.add_argument(f"--{name}", dest=name.replace("-", "_"), default=default,
                        help=f"npm version/range for {name} (default: {default})")
    args = ap.parse_args(argv)

    versions = {name: getattr(args, name.replace("-", "_")) for name, *_ in PACKAGES}
    packages = load_packages(args.packages_dir, versions)
    page = render(packages)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8", newline="\n")
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({size:,} bytes): "
        + ", ".join(f"{p.name}@{p.version}" for p in packages)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
