"""Break the critical rules on purpose, one at a time, and check that the tests guarding each go red.

The mutants are data, in ``tests/mutants.toml``: for each, the file (relative to the repository), the exact
original snippet (it must occur once), the mutated snippet, and the few tests that must catch it. Moving a
module means editing its ``file``; the snippet stays the same.

Each mutant is applied to a copy of ``src/`` in a temporary folder, put first on ``PYTHONPATH`` for the test
run (and for the servers the tests start), so the working tree is never modified. The tests that need a
trained model get one bundle, trained once with the unmodified code and kept under ``.cache/mutation``
(``PRODTYPE_TEST_BUNDLE``); the mutants touch the service and the loop, not training.

    python scripts/mutation_check.py            # all mutants (make mutation)
    python scripts/mutation_check.py --list     # what they are
    python scripts/mutation_check.py --only csrf-session pixel-limit

Exit status 0 only when every mutant is killed (and the unmodified code passes the same tests first).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "tests" / "mutants.toml"
CACHE = REPO / ".cache" / "mutation"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    rule: str

    def check(self, root: Path = REPO) -> str | None:
        """Why this mutant cannot be applied to the code under ``root``, or None."""
        if not self.file.startswith("src/"):
            return f"{self.id}: file {self.file!r} is not under src/"
        path = root / self.file
        if not path.is_file():
            return f"{self.id}: {self.file} does not exist (moved? update its `file`)"
        found = path.read_text().count(self.original)
        if found != 1:
            return f"{self.id}: the original snippet occurs {found} times in {self.file} (expected once)"
        if self.original == self.mutated:
            return f"{self.id}: the mutated snippet is the original"
        if not self.tests:
            return f"{self.id}: no tests listed"
        return None


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    out = []
    for item in data["mutant"]:
        out.append(
            Mutant(
                id=item["id"],
                file=item["file"],
                original=item["original"],
                mutated=item["mutated"],
                tests=tuple(item["tests"]),
                rule=item.get("rule", ""),
            )
        )
    ids = [m.id for m in out]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise SystemExit(f"duplicate mutant ids in {path}: {sorted(dupes)}")
    return out


def _bundle_key(data_dir: Path) -> str:
    h = hashlib.sha256()
    for folder in ("ml", "data"):
        for f in sorted((REPO / "src" / "prodtype" / folder).rglob("*.py")):
            h.update(f.read_bytes())
    for name in ("X_train.csv", "Y_train.csv", "image_only_train.csv"):
        f = data_dir / name
        h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()[:16]


def ensure_bundle() -> Path:
    """A bundle trained on the sample by the unmodified code, reused while ml/, data/ and the sample stay."""
    data_dir = Path(os.environ.get("PRODTYPE_DATA_DIR", REPO.parent / "shared" / "data" / "rakuten"))
    target = CACHE / f"bundle-{_bundle_key(data_dir)}"
    if (target / "manifest.json").is_file():
        return target
    print(f"training the model the tests use once, into {target} (a few minutes) ...", flush=True)
    features = REPO / ".cache" / "test-features"
    code = f"""
from pathlib import Path
from prodtype.data.challenge import load_dataset
from prodtype.ml.train import train_model
d = Path({str(data_dir)!r})
ds = load_dataset(d / "X_train.csv", d / "Y_train.csv", d / "image_train", d / "image_only_train.csv")
train_model(ds, Path({str(target)!r}), image_cache_dir=Path({str(features / "image")!r}),
            text_cache_dir=Path({str(features / "text")!r}), progress=False)
"""
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("bundle-*"):
        shutil.rmtree(old, ignore_errors=True)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return target


def pytest_run(tests: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    """Run pytest on ``tests``; on a timeout, kill it with every process it started (servers too)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so that a timeout ends its children as well
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except BaseException as exc:  # the timeout, or Ctrl-C
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        rc, out = 124, f"timed out after {timeout:.0f} s\n{out}"
    return rc, out, time.monotonic() - start


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0][:110]
    return output.strip().splitlines()[-1][:110] if output.strip() else ""


def mutated_tree(mutant: Mutant, folder: Path) -> Path:
    src = folder / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    path = folder / mutant.file
    path.write_text(path.read_text().replace(mutant.original, mutant.mutated, 1))
    return src


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run (default 900)")
    parser.add_argument(
        "--each",
        action="store_true",
        help="run each listed test on its own: a mutant counts as killed only if every one of them fails",
    )
    args = parser.parse_args()

    mutants = load_mutants()
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutant ids: {sorted(unknown)}")
        mutants = [m for m in mutants if m.id in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.id:28} {m.file}\n{'':28} {m.rule}\n{'':28} tests: {', '.join(m.tests)}")
        return 0
    problems = [p for m in mutants if (p := m.check())]
    if problems:
        print("the mutants no longer match the code:\n  " + "\n  ".join(problems))
        return 2

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTEST_ADDOPTS"] = "-m 'not postgres'"  # the rules are the same on both databases: SQLite only
    all_tests = sorted({t for m in mutants for t in m.tests})
    env["PRODTYPE_TEST_BUNDLE"] = str(ensure_bundle())

    started = time.monotonic()
    load = os.getloadavg()
    print(f"{len(mutants)} mutants; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"the unmodified code first: {len(all_tests)} tests ...", flush=True)
    rc, out, seconds = pytest_run(all_tests, env, args.timeout * 2)
    if rc != 0:
        print(out[-6000:])
        print(f"the tests fail on the unmodified code (exit {rc}): fix them before judging mutants")
        return 2
    print(f"  passed in {seconds:.0f} s\n")

    results: list[tuple[Mutant, str, float, str]] = []
    width = max(len(m.id) for m in mutants)
    for m in mutants:
        with tempfile.TemporaryDirectory(prefix=f"mutant-{m.id}-") as tmp:
            src = mutated_tree(m, Path(tmp))
            run_env = {**env, "PYTHONPATH": str(src)}
            where = subprocess.run(
                [sys.executable, "-c", "import prodtype; print(prodtype.__file__)"],
                env=run_env,
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            ).stdout.strip()
            if not where.startswith(str(src)):
                raise SystemExit(f"the mutated copy is not the one imported ({where}): check PYTHONPATH")
            if args.each:
                runs = [(t, *pytest_run([t], run_env, args.timeout)) for t in m.tests]
                passing = [t for t, rc, _, _ in runs if rc == 0]
                odd = [(t, rc, o) for t, rc, o, _ in runs if rc not in (0, 1)]
                rc = odd[0][1] if odd else (0 if passing else 1)
                out = odd[0][2] if odd else ""
                seconds = sum(s for _, _, _, s in runs)
            else:
                rc, out, seconds = pytest_run(list(m.tests), run_env, args.timeout)
        verdict = {0: "SURVIVED", 1: "killed"}.get(rc, f"error (pytest exit {rc})")
        if args.each:
            detail = f"still green: {', '.join(passing)}" if passing else f"all {len(m.tests)} red"
        else:
            detail = first_failure(out) if rc else ", ".join(m.tests)
        results.append((m, verdict, seconds, detail))
        print(f"{m.id:{width}}  {verdict:8}  {seconds:5.0f} s  {detail}", flush=True)
        if rc not in (0, 1):
            print(re.sub(r"^", "    ", out[-3000:], flags=re.M))

    killed = sum(v == "killed" for _, v, _, _ in results)
    survived = [m.id for m, v, _, _ in results if v == "SURVIVED"]
    errors = [m.id for m, v, _, _ in results if v not in ("killed", "SURVIVED")]
    total = time.monotonic() - started
    print(
        f"\n{len(results)} mutants: {killed} killed, {len(survived)} survived, {len(errors)} errors; "
        f"{total / 60:.1f} min (load average now {os.getloadavg()[0]:.1f})"
    )
    if survived:
        print("survivors (no test notices these breaks): " + ", ".join(survived))
    if errors:
        print("errors (the run did not end in passed/failed tests): " + ", ".join(errors))
    return 0 if not survived and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
