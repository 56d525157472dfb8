"""The README's pipeline recipes run as written (issue 20).

The ``bash`` blocks of README.md's pipeline sections -- GMM-UBM (with the lists, cohort models,
S-norm, calibration on development trials and evaluation), i-vectors and Kaldi data
directories -- are taken from README.md itself (no second copy of the commands here) and run
by bash, each block as one script stopping at the first failure, in a directory holding a
small generated corpus as ``CORPUS`` (and, for the data-directory recipe, Kaldi data
directories ``data/{train,enroll,test}`` made from it), with the ``ipem`` of this Python
first on ``PATH``.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ipem
from ipem.io import write_data_dir

README = Path(__file__).resolve().parent.parent / "README.md"

#: The sections whose command blocks are recipes, by the start of their heading.
SECTIONS = ("## Speaker verification (GMM-UBM)", "## i-vectors", "## Kaldi data directories")


def readme_blocks(heading):
    """The ``bash`` blocks of the README section whose heading starts with ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = next(m.end() for m in re.finditer(r"^## .*$", text, re.M)
                 if m.group().startswith(heading))
    end = re.compile(r"^## ", re.M).search(text, start)
    section = text[start:end.start() if end else len(text)]
    return re.findall(r"^```bash\n(.*?)^```", section, re.M | re.S)


def test_every_pipeline_section_has_recipes():
    blocks = {h: readme_blocks(h) for h in SECTIONS}
    assert all(blocks.values()), blocks
    gmm = "".join(blocks[SECTIONS[0]])
    for step in ("extract", "train-ubm", "adapt", "score", "norm", "calibrate", "evaluate"):
        assert f"ipem {step} " in gmm
    assert "ipem train-plda" in "".join(blocks[SECTIONS[1]])


def _run(block, cwd, env):
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README block failed in {cwd}:\n{block}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _data_dirs(info, where):
    """data/{train,enroll,test} (+ data/test/trials) of the corpus, Kaldi style ids."""
    def utt(rel):
        return os.path.basename(rel)[:-4]             # af1_test_00: speaker-prefixed

    def write(name, rels):
        write_data_dir(where / "data" / name, wav={utt(r): str(info.out_dir / r) for r in rels},
                       utt2spk={utt(r): Path(r).parent.name for r in rels})

    trials = [line.split() for line in info.trials_list.read_text().splitlines()]
    write("train", info.ubm_list.read_text().split())
    write("enroll", [line.split()[1] for line in info.enroll_list.read_text().splitlines()])
    write("test", list(dict.fromkeys(t[1] for t in trials)))
    (where / "data" / "test" / "trials").write_text(
        "".join(f"{m} {utt(r)} {lab}\n" for m, r, lab in trials))


@pytest.mark.once
def test_readme_recipes_run_as_written(tmp_path):
    from ipem.synth import MIN_SPEAKERS, available_voices, generate_corpus

    if shutil.which("espeak-ng") is None or len(available_voices()) < MIN_SPEAKERS:
        pytest.skip("needs espeak-ng and the MBROLA voices")
    ipem.parallel.ensure_mpiexec()
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    # 4 background utterances per speaker: the i-vector back-end needs more than R + speakers
    info = generate_corpus(tmp_path / "CORPUS", n_speakers=8, n_ubm=4, n_enroll=1, n_test=2,
                           seed=7)

    # GMM-UBM, then i-vectors on its UBM, features and lists
    for block in readme_blocks(SECTIONS[0]) + readme_blocks(SECTIONS[1]):
        out = _run(block, tmp_path, env)
    cohort = (tmp_path / "cohort.lst").read_text().splitlines()
    assert len(cohort) == 8                              # 2 cohort speakers x 4 utterances
    assert sorted(p.stem for p in (tmp_path / "cohort_models").glob("*.npz")) == sorted(
        line.split()[0] for line in cohort)
    cohort_speakers = (tmp_path / "cohort_speakers.lst").read_text().split()
    trials = [line.split() for line in (tmp_path / "trials.lst").read_text().splitlines()]
    assert len(trials) == 6 * 12 and not any(t[0] in cohort_speakers for t in trials)
    dev = (tmp_path / "dev.key").read_text().splitlines()
    ev = (tmp_path / "eval.key").read_text().splitlines()
    assert len(dev) + len(ev) == len(trials) and dev and ev
    assert not {line.split()[1] for line in dev} & {line.split()[1] for line in ev}
    for name in ("snorm.txt", "cal.json", "det.png", "s.txt", "ivector_cal.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert "EER" in out

    # Kaldi data directories
    work = tmp_path / "datadir"
    _data_dirs(info, work)
    for block in readme_blocks(SECTIONS[2]):
        out = _run(block, work, env)
    assert len((work / "scores.txt").read_text().splitlines()) == info.n_trials
    assert "EER" in out
